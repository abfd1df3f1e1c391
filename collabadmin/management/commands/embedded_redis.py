"""``manage.py embedded_redis status|stop``: the Redis server started when REDIS_URL is unset."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from collabadmin import embedded_redis


class Command(BaseCommand):
    help = "Show or stop the embedded Redis server under the var/ folder."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["status", "stop"])

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        if not settings.REDIS_EMBEDDED:
            raise CommandError(f"REDIS_URL is set ({settings.REDIS_URL}); there is no embedded Redis to manage.")
        sock = embedded_redis.socket_path(settings.VAR_DIR)
        if action == "status":
            state = "running" if embedded_redis.answers(sock) else "not running"
            self.stdout.write(f"embedded Redis on {sock}: {state}")
        elif embedded_redis.stop(settings.VAR_DIR):
            self.stdout.write(f"stopped the embedded Redis on {sock}")
        else:
            self.stdout.write("the embedded Redis was not running")
