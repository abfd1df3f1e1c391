"""``manage.py create_api_token USER --name NAME [--days N]``: a new API token, its key printed once.

For scripts and first installs (README); a person can also make one on the desktop's
API tokens page. The key is printed alone on the last line, so ``| tail -n 1`` takes it.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from common.actors import COMMAND
from failover.services.api_tokens import token_create


class Command(BaseCommand):
    help = "Make an API token for a user and print its key (shown this once; only its hash is kept)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("user", help="The user name the token acts as.")
        parser.add_argument("--name", required=True, help="What will use it, e.g. 'IVR integration'.")
        parser.add_argument(
            "--days", type=int, default=None, help="Days until it expires (default: API_TOKEN_DEFAULT_DAYS)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["user"]).first()
        if user is None:
            raise CommandError(f"No user named {options['user']!r}.")
        try:
            token, key = token_create(user=user, name=options["name"], days=options["days"], actor=COMMAND)
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from error
        expires = token.expires_at.strftime("%Y-%m-%d %H:%M UTC")
        self.stderr.write(f"Token {token.name!r} ({token.key_prefix}…) for {user.get_username()}, expires {expires}.")
        self.stdout.write(key)
