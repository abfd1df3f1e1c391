"""docs/fault-tolerance.md cannot go stale: every test it names exists.

The page's table answers, for each statement of the original design about fault
tolerance, which test proves what collabadmin does. A test renamed or removed would leave
the page pointing at nothing; these checks fail instead. Each row must also name a test in
its "Proven by" column, so a row cannot lose its proof without anyone noticing.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "fault-tolerance.md"

# `tests/some/test_file.py::test_name`, as the page writes every reference to a test.
TEST_REFERENCE = re.compile(r"(tests/[\w/]+\.py)::(test_\w+)")
PROVEN_BY = "Proven by"


def named_tests(text: str) -> list[tuple[str, str]]:
    return TEST_REFERENCE.findall(text)


def missing_tests(text: str, root: Path) -> list[str]:
    """The references of ``text`` whose file, or whose test function in it, does not exist."""
    missing = []
    for path, name in named_tests(text):
        source = root / path
        defined = re.compile(rf"^\s*(async\s+)?def {name}\(", re.MULTILINE)
        if not source.is_file():
            missing.append(f"{path}::{name} (no such file)")
        elif not defined.search(source.read_text(encoding="utf-8")):
            missing.append(f"{path}::{name} (no such test in the file)")
    return missing


def table_rows(text: str) -> tuple[list[str], list[list[str]]]:
    """The header cells and the body rows of the page's one table (cells stripped)."""
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith("|")]
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    header, _separator, *body = cells
    return header, body


def rows_without_proof(text: str) -> list[str]:
    header, body = table_rows(text)
    column = header.index(PROVEN_BY)
    return [row[0] for row in body if not named_tests(row[column])]


def test_every_test_the_page_names_exists():
    text = PAGE.read_text(encoding="utf-8")
    assert len(named_tests(text)) >= 16, "the page names fewer tests than it has rows: did its format change?"
    assert missing_tests(text, ROOT) == []


def test_every_row_names_the_test_that_proves_it():
    header, body = table_rows(PAGE.read_text(encoding="utf-8"))
    assert PROVEN_BY in header
    assert len(body) >= 16
    assert all(len(row) == len(header) for row in body), "a row has a stray | or a missing cell"
    assert rows_without_proof(PAGE.read_text(encoding="utf-8")) == []


def test_the_checks_catch_a_missing_file_a_missing_test_and_a_row_without_proof(tmp_path):
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_a.py").write_text("def test_here():\n    pass\n\nasync def test_async():\n    pass\n")
    page = (
        "| # | Says | Proven by |\n|---|---|---|\n"
        "| 1 | x | `tests/test_a.py::test_here`<br>`tests/test_a.py::test_async` |\n"
        "| 2 | y | `tests/test_a.py::test_gone` |\n"
        "| 3 | z | `tests/test_b.py::test_here` |\n"
        "| 4 | w | nothing yet |\n"
    )
    assert missing_tests(page, tmp_path) == [
        "tests/test_a.py::test_gone (no such test in the file)",
        "tests/test_b.py::test_here (no such file)",
    ]
    assert rows_without_proof(page) == ["4"]
    # A name that only starts like a real test is not that test.
    assert missing_tests("`tests/test_a.py::test_her`", tmp_path) == [
        "tests/test_a.py::test_her (no such test in the file)"
    ]
