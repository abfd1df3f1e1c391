"""docs/operations.md carries exactly the roles table the code generates."""

from __future__ import annotations

import re
from io import StringIO
from pathlib import Path

from django.core.management import call_command

from common import roles

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
BLOCK = re.compile(r"<!-- roles-table[^>]*-->\n(.*?)<!-- /roles-table -->", re.DOTALL)


def test_the_docs_hold_exactly_the_generated_roles_table() -> None:
    found = BLOCK.findall(OPERATIONS.read_text(encoding="utf-8"))

    assert found == [roles.roles_table_markdown()], "run `manage.py roles_table` and paste it into docs/operations.md"


def test_the_command_prints_the_table() -> None:
    out = StringIO()
    call_command("roles_table", stdout=out)

    assert out.getvalue() == roles.roles_table_markdown()


def test_the_table_has_a_row_per_permission_and_a_column_per_role() -> None:
    lines = roles.roles_table_markdown().splitlines()

    assert len(lines) == 2 + len(roles.PERMISSIONS) + 1  # header, rule, permissions, the Django admin
    assert all(line.count("|") == len(roles.ROLES) + 3 for line in lines)
    assert "| Switch links over (`switch_over_links`) | · | · | yes | yes |" in lines
