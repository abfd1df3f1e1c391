"""``manage.py undrain_server NAME --reason TEXT``: the server takes new sessions again."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from failover.management.commands.drain_server import COMMAND_ACTOR, server_named
from failover.services.drain import server_undrain


class Command(BaseCommand):
    help = "Take a Collaboration Server out of drain: it takes new sessions again."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="The server's name.")
        parser.add_argument("--reason", required=True, help="Why; kept in the audit history.")
        parser.add_argument("--actor", default=COMMAND_ACTOR, help="Who, for the audit history.")

    def handle(self, *args: Any, **options: Any) -> None:
        server = server_named(options["name"])
        try:
            server_undrain(server_id=server.pk, actor=options["actor"], reason=options["reason"])
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from error
        self.stdout.write(f"{server.name} takes new sessions again.")
