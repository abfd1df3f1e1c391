"""``manage.py runpeer media-blender|admin-workstation --port PORT [--name NAME] [--data FILE | --icm-store PATH]``.

A thin wrapper of ``python -m failover.peering``: same options, same ready line, same code.
The simulator needs neither the database nor Django's system checks.
"""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from failover.peering.__main__ import add_run_arguments, run


class Command(BaseCommand):
    help = "Run a Media Blender or ICM Admin Workstation simulator (see docs/peer-protocol.md)."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        add_run_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        status = run(argparse.Namespace(**options))
        if status:
            raise CommandError(f"the simulator exited with status {status}", returncode=status)
