"""Smoke test of the benchmark harness (issue 7): ``python -m bench.run --quick --only live_push``
runs against real processes (node, Redis, 200 WebSocket clients) and prints its summary
table. It checks that the harness works, never how fast anything is (benchmarks print
figures; tests do not time things)."""

from __future__ import annotations

import json
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


@pytest.mark.browser
def test_the_quick_desktop_load_runs_emulated_and_chromium_pages(tmp_path):
    """``bench.desktop_load --quick`` (issue 18): a node, 3 emulated pages and 2 Chromium
    pages under the load, through ``bench.run``. Checks the harness, not the figures."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--only", "desktop_load", "--no-docs"],
        cwd=ROOT,
        env=project_env(BENCH_RESULTS_DIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=180,
    )

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = result.stdout.split("=== summary", 1)[1]
    assert "desktop_load" in summary
    assert "commit → page updated" in summary
    assert "largest N one node holds" in summary
    data = json.loads((tmp_path / "desktop_load.json").read_text())
    (row,) = data["rows"]
    assert (row["watchers"], row["emulated"], row["chromium"]) == (5, 3, 2)
    assert row["errors"] == 0, row["error_samples"]
    assert row["changes_per_s"] > 0
    assert row["failovers"] >= 1
    assert row["refused_changes"] == 0
    # Both browsers reported what their DOM showed (whatever the times).
    assert set(row["dom_ms"]) == {"sessions", "overview"}


@pytest.mark.browser
def test_the_quick_desktop_load_on_two_nodes_behind_the_balancer(tmp_path):
    """``bench.desktop_load --quick --nodes 2`` (issue 18 point 3): two nodes behind HAProxy
    running deploy/haproxy.cfg, the pages connecting to the balancer. Checks the harness
    (every socket and answer is on one of the two nodes), not the figures."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.desktop_load", "--quick", "--nodes", "2"],
        cwd=ROOT,
        env=project_env(BENCH_RESULTS_DIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=180,
    )

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "per node:" in result.stdout
    data = json.loads((tmp_path / "desktop_load.json").read_text())
    (row,) = data["rows"]
    assert (row["watchers"], row["nodes"]) == (5, 2)
    assert row["errors"] == 0, row["error_samples"]
    assert row["refused_changes"] == 0
    assert set(row["dom_ms"]) == {"sessions", "overview"}
    nodes = row["per_node"]
    assert [n["node"] for n in nodes] == ["bench-a", "bench-b"]
    # Round robin: the 5 status sockets (3 emulated pages, 2 browser pages) on both nodes.
    assert sum(n["websockets"] for n in nodes) == 5
    assert all(n["websockets"] >= 1 and n["not_200"] == 0 for n in nodes)
    # The pages' fragments came pushed on their sockets (few fetches are left: the resyncs).
    assert sum(row["pushes_per_page_per_s"].values()) > 0
    assert row["balancer_cpu_pct"] is not None
