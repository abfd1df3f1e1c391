"""The repository stands on its own: a clone holds everything its files point to.

Two checks over what git tracks. No file names the planning notes that lived beside the
repository while it was built (a user who clones it does not have them), and every
relative link in the README and docs/ leads to a file of the repository and, when it
names a heading of a Markdown file, to a heading that exists.
"""

from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
THIS_FILE = Path(__file__).resolve().relative_to(ROOT).as_posix()

# Built from parts so that the patterns do not match this file's own source either.
OUTSIDE_REFERENCES = re.compile(
    "|".join(re.escape(name) for name in ["../" + "shared", "PRODUCT" + ".md", "INTERFACES" + ".md", "STYLE" + ".md"])
)
# [text](target) and ![alt](target); the target stops at a space (an optional title follows).
MARKDOWN_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto:, ...


def tracked_files() -> list[str]:
    listing = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    return [name for name in listing.stdout.decode().split("\0") if name]


def markdown_documents() -> list[str]:
    return ["README.md", *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))]


def outside_lines(text: str) -> list[str]:
    numbered = enumerate(text.splitlines(), 1)
    return [f"{number}: {line.strip()}" for number, line in numbered if OUTSIDE_REFERENCES.search(line)]


def prose_lines(text: str) -> list[tuple[int, str]]:
    """The lines outside fenced code blocks, numbered: a link or heading in a fence is code."""
    lines, in_fence = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence:
            lines.append((number, line))
    return lines


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    seen: dict[str, int] = {}
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if match:
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
    # A repeated heading gets -1, -2, ... after the first.
    return frozenset(f"{base}-{n}" if n else base for base, count in seen.items() for n in range(count))


def broken_links(document: str) -> list[str]:
    source = ROOT / document
    problems = []
    for number, line in prose_lines(source.read_text(encoding="utf-8")):
        for target in MARKDOWN_LINK.findall(line):
            if EXTERNAL.match(target):
                continue
            path_part, _, fragment = target.partition("#")
            linked = (source.parent / path_part).resolve() if path_part else source
            if not linked.is_relative_to(ROOT) or not linked.exists():
                problems.append(f"{document}:{number}: {target} (no such file in the repository)")
            elif fragment and linked.suffix == ".md" and fragment not in anchors(linked):
                problems.append(f"{document}:{number}: {target} (no heading #{fragment})")
    return problems


def test_no_tracked_file_refers_to_the_notes_outside_the_repository():
    offenders = {}
    for name in tracked_files():
        path = ROOT / name
        if name == THIS_FILE or not path.is_file():
            continue
        lines = outside_lines(path.read_bytes().decode("utf-8", errors="replace"))
        if lines:
            offenders[name] = lines
    assert not offenders, f"files that point outside the repository: {offenders}"


@pytest.mark.parametrize("document", markdown_documents())
def test_every_relative_link_of_the_documentation_resolves(document):
    assert not broken_links(document)


def test_the_link_check_catches_a_missing_file_and_a_missing_heading(tmp_path, monkeypatch):
    # The check itself, on a document with one good link and two broken ones.
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# Title\n\n## Media Blender failover\n", encoding="utf-8")
    (tmp_path / "README.md").write_text(
        "[ok](docs/a.md#media-blender-failover)\n[gone](docs/b.md)\n[bad](docs/a.md#nowhere)\n"
        "```\n[in code](docs/c.md)\n```\n[web](https://example.com/x.md)\n",
        encoding="utf-8",
    )
    assert broken_links("README.md") == [
        "README.md:2: docs/b.md (no such file in the repository)",
        "README.md:3: docs/a.md#nowhere (no heading #nowhere)",
    ]


def test_the_reference_check_catches_each_outside_name():
    for name in ["../" + "shared/x", "PRODUCT" + ".md", "INTERFACES" + ".md", "STYLE" + ".md"]:
        assert outside_lines(f"see {name} row 3") == [f"1: see {name} row 3"]
    assert outside_lines("see docs/product.md, 'Verify and Sync'") == []


PRODUCT_CITATION = re.compile(r"docs/product\.md,\s+'([^']+)'")


def test_every_citation_of_a_product_section_names_a_heading_of_docs_product():
    headings = {
        match.group(2)
        for _, line in prose_lines((ROOT / "docs" / "product.md").read_text(encoding="utf-8"))
        if (match := HEADING.match(line))
    }
    cited = {
        (name, section)
        for name in tracked_files()
        if name.endswith(".py") and name != THIS_FILE
        for section in PRODUCT_CITATION.findall((ROOT / name).read_text(encoding="utf-8"))
    }
    assert cited, "no code cites docs/product.md any more: drop this test or the citations' format changed"
    assert not {(name, section) for name, section in cited if section not in headings}


def test_no_tracked_symbolic_link_leads_out_of_the_repository():
    # A helper's worktree once committed its `.venv`, a link to another checkout's
    # environment: merged, it replaced the checkout's own virtual environment, and a
    # clone elsewhere would have got a link to a path that does not exist there.
    listing = subprocess.run(["git", "ls-files", "-s", "-z"], cwd=ROOT, capture_output=True, check=True)
    links = [entry.split("\t", 1)[1] for entry in listing.stdout.decode().split("\0") if entry.startswith("120000 ")]
    outside = [name for name in links if not (ROOT / name).resolve().is_relative_to(ROOT)]
    assert outside == []
    assert ".venv" not in links
