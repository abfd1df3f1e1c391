"""``manage.py peerctl --port PORT fault latency 200|stall|refuse|clear|show``, ``hangup ID``,
``set-icm-side A|B|none``, ``icm-add-agent ID [--name N] [--skill-group G ...] [--disabled]``,
``icm-delete-agent ID``, ``call OP key=value ...``: a thin wrapper of
``python -m failover.peering ctl``.
"""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from failover.peering.control import add_ctl_arguments, run_ctl


class Command(BaseCommand):
    help = (
        "Drive a running peer simulator: inject faults, hang up a caller, change the ICM side, "
        "change the ICM outside collabadmin (icm-add-agent, icm-delete-agent), call any op."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        add_ctl_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        status = run_ctl(argparse.Namespace(**options), out=self.stdout, err=self.stderr)
        if status:
            raise CommandError(f"peerctl failed with status {status}", returncode=status)
