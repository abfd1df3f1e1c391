"""``manage.py drain_server NAME --reason TEXT [--deadline MINUTES]``: planned maintenance.

The same service as the console's Drain button and ``POST /api/v1/servers/{id}/drain/``;
audited as ``system:command`` (or ``--actor``)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from common.actors import COMMAND
from failover.models import Server
from failover.services.drain import server_drain

COMMAND_ACTOR = COMMAND


class Command(BaseCommand):
    help = "Drain a Collaboration Server: no new sessions, its queue handed on, its agents asked to finish."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="The server's name.")
        parser.add_argument("--reason", required=True, help="Why; kept in the audit history, shown to its agents.")
        parser.add_argument(
            "--deadline", type=int, metavar="MINUTES", help="End sessions still open after this many minutes."
        )
        parser.add_argument("--actor", default=COMMAND_ACTOR, help="Who, for the audit history.")

    def handle(self, *args: Any, **options: Any) -> None:
        server = server_named(options["name"])
        try:
            server = server_drain(
                server_id=server.pk,
                actor=options["actor"],
                reason=options["reason"],
                deadline_minutes=options["deadline"],
            )
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from error
        deadline = f"; sessions still open at {server.drain_deadline.isoformat()} end" if server.drain_deadline else ""
        self.stdout.write(f"{server.name} is draining{deadline}.")


def server_named(name: str) -> Server:
    try:
        return Server.objects.get(name=name)
    except Server.DoesNotExist as missing:
        raise CommandError(f"No server named {name!r}.") from missing
