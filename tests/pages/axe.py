"""axe-core in a Playwright page: inject the vendored engine, run its rules, report.

The rules axe runs by default (WCAG 2.0-2.2 A and AA, and best practices) plus the
experimental ones (``label-content-name-mismatch``, WCAG 2.5.3 "Label in Name", is one of
them); a page passes only with no violation at all, whatever its impact. Left out are the
AAA rules axe also leaves out by default (the enhanced 7:1 contrast, for one): the desktops
aim at WCAG 2.2 AA. The engine is evaluated through the DevTools protocol, which the page's
Content Security Policy does not govern: the pages under test keep their real policy.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Any

AXE = Path(__file__).parent / "vendor" / "axe.min.js"
AXE_SHA256 = "29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c"  # axe-core 4.14.1

RUN = """async () => {
  const rules = Object.fromEntries(axe.getRules(["experimental"]).map((rule) => [rule.ruleId, { enabled: true }]));
  const results = await axe.run(document, { rules, resultTypes: ["violations"] });
  return results.violations.map((v) => ({
    id: v.id,
    impact: v.impact,
    help: v.help,
    nodes: v.nodes.map((n) => ({ target: n.target.join(" "), summary: n.failureSummary })),
  }));
}"""


@lru_cache(maxsize=1)
def engine() -> str:
    source = AXE.read_bytes()
    digest = hashlib.sha256(source).hexdigest()
    assert digest == AXE_SHA256, f"{AXE} is not the vendored axe-core 4.14.1 (sha256 {digest})"
    return source.decode()


def violations(page: Any) -> list[dict[str, Any]]:
    """Every axe violation on the page as it is now."""
    if not page.evaluate("typeof window.axe === 'object'"):
        page.evaluate(engine())
    return page.evaluate(RUN)


def describe(where: str, found: list[dict[str, Any]]) -> list[str]:
    """One line per violated rule: where, which rule, how serious, and its first nodes."""
    lines = []
    for violation in found:
        targets = "; ".join(node["target"] for node in violation["nodes"][:3])
        count = len(violation["nodes"])
        lines.append(f"{where}: {violation['id']} ({violation['impact']}) x{count}: {violation['help']} [{targets}]")
    return lines
