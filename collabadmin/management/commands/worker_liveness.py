"""``manage.py worker_liveness``: exit 0 while the Celery worker takes work, 1 when it is stuck.

A liveness probe for supervisors that do not use systemd's watchdog (a Kubernetes
``livenessProbe`` ``exec``, a cron job, a monitoring agent): it reads the status file the
worker rewrites every second (collabadmin/worker_watchdog.py) and fails when the worker
found itself stuck (work waiting in its queue while it had room and took nothing), when the
file has not been rewritten for 10 s (the process hangs), or when there is none.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from collabadmin import worker_watchdog


class Command(BaseCommand):
    help = "Exit non-zero when the Celery worker is stuck or hung (a liveness probe)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--status-file",
            type=Path,
            default=None,
            help="The worker's status file (default: COLLABADMIN_WORKER_STATUS_FILE, else var/celery-worker.json).",
        )

    def handle(self, *args: Any, status_file: Path | None, **options: Any) -> None:
        path = status_file or worker_watchdog.status_file()
        status = worker_watchdog.read_status(path)
        problem = worker_watchdog.liveness_problem(status, now=time.time())
        if options["verbosity"] >= 1:
            self.stdout.write(json.dumps({"live": problem is None, "problem": problem, "status": status}))
        if problem is not None:
            raise CommandError(f"worker not live ({path}): {problem}", returncode=1)
