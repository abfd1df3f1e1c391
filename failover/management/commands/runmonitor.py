"""``manage.py runmonitor``: the health monitor as a process of its own.

Web nodes already run one each (ASGI lifespan); this is for deployments that keep
monitoring apart from web traffic. Only one monitor acts at a time (database lease).
"""

from __future__ import annotations

import gc
from typing import Any

from django.core.management.base import BaseCommand

from failover.monitor.runner import run_forever


class Command(BaseCommand):
    help = "Probe every peer and server and switch links over when needed (until Ctrl-C)."

    def handle(self, *args: Any, **options: Any) -> None:
        # Everything loaded so far (Django, the models, the apps) lives as long as the
        # process: out of the collector's sight, a full collection does not stall the
        # probes' event loop for the whole heap (as collabadmin/asgi.py does for nodes).
        gc.freeze()
        run_forever()
