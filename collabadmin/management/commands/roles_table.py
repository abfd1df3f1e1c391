"""``manage.py roles_table``: what each role may do, as the Markdown table of docs/operations.md."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from common.roles import roles_table_markdown


class Command(BaseCommand):
    help = "Print the roles table (Markdown) that docs/operations.md carries under 'Roles'."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(roles_table_markdown(), ending="")
