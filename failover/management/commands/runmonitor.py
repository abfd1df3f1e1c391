"""``manage.py runmonitor``: the health monitor as a process of its own.

Web nodes already run one each (ASGI lifespan); this is for deployments that keep
monitoring apart from web traffic. Only one monitor acts at a time (database lease).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from failover.monitor.runner import run_forever


class Command(BaseCommand):
    help = "Probe every peer and server and switch links over when needed (until Ctrl-C)."

    def handle(self, *args: Any, **options: Any) -> None:
        run_forever()
