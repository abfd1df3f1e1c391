"""Smoke test of the benchmark harness (issue 7): ``python -m bench.run --quick --only live_push``
runs against real processes (node, Redis, 200 WebSocket clients) and prints its summary
table. It checks that the harness works, never how fast anything is (benchmarks print
figures; tests do not time things)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.processes import ROOT, project_env

pytestmark = pytest.mark.slow


def test_the_quick_harness_prints_a_summary_table(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--only", "live_push", "--no-docs"],
        cwd=ROOT,
        # Its figures go to a temporary folder, not over a real run's bench/results/.
        env=project_env(BENCH_RESULTS_DIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=180,
    )

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = result.stdout.split("=== summary", 1)[1]
    assert re.search(r"\|\s+benchmark\s+\|\s+figure\s+\|\s+value\s+\|\s+target\s+\|\s+result\s+\|", summary)
    assert "live_push" in summary
    assert "commit → receipt" in summary
    assert "targets met:" in summary
    assert (tmp_path / "live_push.json").exists()
