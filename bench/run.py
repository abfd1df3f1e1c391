"""Run the issue-7 benchmarks, print one table of figures against the targets, write
``docs/performance.md``.

    .venv/bin/python -m bench.run                     # everything (about 30 minutes)
    .venv/bin/python -m bench.run --quick             # a smoke run: fewer trials, smaller sizes (~5 min)
    .venv/bin/python -m bench.run --only live_push    # one or more (comma-separated)
    .venv/bin/python -m bench.run --soak-seconds 120  # a shorter healthy-peer soak than the issue's 600 s

Each benchmark runs as a child process (``python -m bench.<name>``, see its docstring),
starts the real processes it measures, stops them, prints its own table and writes
``bench/results/<name>.json``; this command then prints the summary (figure, value,
target, met / MISSED). The 1-minute load average is sampled every 5 s throughout: the
machine may be shared, and the figures mean little without it.

``docs/performance.md`` gets the summary, the machine and the per-benchmark tables
between its ``bench.run`` markers (the rest of the page, written by hand, is kept). It is
written after a full run of every benchmark, or with ``--write-docs``; never by a
``--quick`` run unless asked.

Uses ``DATABASE_URL`` if it names PostgreSQL (a throwaway database is created on that
server per benchmark), else a throwaway SQLite file; always a Redis of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from bench._common import REPO_ROOT, RESULTS_DIR, format_table, machine_info, package_version, write_results

BENCHMARKS = [
    "failover_crash",
    "failover_stall",
    "haproxy_side_by_side",
    "monitor_scale",
    "live_push",
    "queue_drain",
    "caller_requests",
    "admin_desktop",
    "desktop_load",
    "agent_load",
    "notify_latency",
]
DOC = REPO_ROOT / "docs" / "performance.md"
START, END = "<!-- bench.run:start -->", "<!-- bench.run:end -->"
ADMIN_TARGET_MS = 300.0


class LoadSampler:
    """The 1-minute load average every 5 s, in a thread."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(round(os.getloadavg()[0], 2))
            self._stop.wait(5)

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(6)

    def summary(self) -> dict[str, float | None]:
        s = self.samples
        return {
            "min": min(s) if s else None,
            "mean": round(sum(s) / len(s), 2) if s else None,
            "max": max(s) if s else None,
        }


def child_argv(name: str, args: argparse.Namespace) -> list[str]:
    argv = [sys.executable, "-m", f"bench.{name}"]
    if name == "admin_desktop":
        if args.quick:
            argv += ["--servers", "100", "--sessions", "1000", "--requests", "5"]
        return argv
    if args.quick:
        argv.append("--quick")
    if name == "failover_stall" and args.soak_seconds is not None:
        argv += ["--soak-seconds", str(args.soak_seconds)]
    if name == "monitor_scale" and args.profile:
        argv.append("--profile")
    if name in ("queue_drain", "caller_requests", "live_push") and args.profile:
        argv.append("--profile")
    return argv


def run_child(name: str, args: argparse.Namespace) -> tuple[int, float]:
    argv = child_argv(name, args)
    print(f"\n=== {name}: {' '.join(argv[1:])}", flush=True)
    started = time.monotonic()
    code = subprocess.call(argv, cwd=REPO_ROOT)
    elapsed = time.monotonic() - started
    print(f"=== {name}: exit {code} after {elapsed:.0f} s", flush=True)
    return code, elapsed


def load_result(name: str) -> dict[str, Any] | None:
    path = RESULTS_DIR / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def admin_desktop_figures(data: dict[str, Any]) -> list[dict[str, Any]]:
    large, small = data["large"], data["small"]
    sizes = data["sizes"]["large"]
    rows = []
    for page in ("/", "/?fragment=1", "status_snapshot()", "/api/v1/status/"):
        figures = large.get(page)
        if not figures:
            continue
        constant = small[page]["queries"] == figures["queries"]
        rows.append(
            {
                "benchmark": "admin_desktop",
                "figure": f"{page} @ {sizes['servers']} servers, {sizes['sessions']} sessions (server time)",
                "value": f"p50 {figures['p50_ms']} ms · p95 {figures['p95_ms']} ms · "
                f"{figures['queries']} queries ({'constant' if constant else 'NOT constant'})",
                "target": f"p95 ≤ {ADMIN_TARGET_MS:.0f} ms, constant queries",
                "met": figures["p95_ms"] <= ADMIN_TARGET_MS and constant,
            }
        )
    return rows


def collect(names: Sequence[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name in names:
        data = load_result(name)
        if data is None:
            rows.append({"benchmark": name, "figure": "did not run", "value": "-", "target": "-", "met": False})
        elif name == "admin_desktop":
            rows += admin_desktop_figures(data)
        else:
            rows += data.get("figures", [])
    return rows


def summary_table(rows: list[dict[str, Any]]) -> str:
    def verdict(met: bool | None) -> str:
        return "-" if met is None else ("met" if met else "MISSED")

    body = [[r["benchmark"], r["figure"], r["value"], r["target"], verdict(r["met"])] for r in rows]
    return format_table(["benchmark", "figure", "value", "target", "result"], body)


def haproxy_from_trials(quick: bool) -> None:
    """``haproxy_side_by_side.json`` from the crash and stall trials of this run (HAProxy was
    timed in the same trials), instead of running every trial a second time."""
    from bench import haproxy_side_by_side as hs

    scenarios = {}
    for name in ("failover_crash", "failover_stall"):
        data = load_result(name) or {}
        scenarios.update(data.get("scenarios", {}))
    rows = hs.side_by_side(scenarios)
    print(f"\n=== haproxy_side_by_side (from the crash and stall trials)\n{hs.table(rows)}")
    write_results(
        "haproxy_side_by_side",
        {
            "benchmark": "haproxy_side_by_side",
            "haproxy_version": hs.haproxy_version(),
            "rows": rows,
            "figures": hs.figures(rows),
            "from_trials_of": ["failover_crash", "failover_stall"],
        },
    )


def detail_tables(names: Sequence[str]) -> str:
    """Each benchmark's own table, re-made from its JSON, for the docs."""
    from bench import caller_requests, failover_crash, haproxy_side_by_side, live_push, monitor_scale, queue_drain

    parts = []
    for name in names:
        data = load_result(name)
        if data is None:
            continue
        if name in ("failover_crash", "failover_stall"):
            text = failover_crash.table(data["scenarios"])
            soak = data["scenarios"].get("stall", {}).get("soak")
            if soak:
                text += (
                    f"\n\nSoak: {soak['seconds']:.0f} s, {soak['pairs']} healthy pairs, {soak['busy_loops']} busy "
                    f"loops, load 1 min mean {soak['load_1m_mean']} / max {soak['load_1m_max']}: "
                    f"{soak['false_switchovers']} switchovers, {soak['peer_health_changes']} peer health changes."
                )
        elif name == "haproxy_side_by_side":
            text = haproxy_side_by_side.table(data["rows"])
        elif name == "monitor_scale":
            text = monitor_scale.table(data["rows"])
        elif name == "live_push":
            text = live_push.table(data["rows"])
        elif name == "queue_drain":
            text = queue_drain.table(data["result"])
        elif name == "caller_requests":
            text = caller_requests.table(data["rows"] if "rows" in data else [data["result"]])
        elif name == "admin_desktop":
            from bench import admin_desktop

            text = admin_desktop.table(data)
        elif name == "desktop_load":
            from bench import desktop_load

            text = desktop_load.table(data["rows"]) + f"\n\nLargest N with p99 ≤ 1 s: {data['largest_n_p99_1s']}."
        elif name == "agent_load":
            from bench import agent_load

            text = agent_load.table(data["rows"])
        elif name == "notify_latency":
            from bench import notify_latency

            text = notify_latency.table(data["results"])
        else:
            continue
        parts.append(f"#### `{name}`\n\n{text}\n")
    return "\n".join(parts)


def machine_table(info: dict[str, Any], load: dict[str, Any], database: str) -> str:
    rows = [
        ["CPUs (`nproc`)", info["nproc"]],
        ["CPU model (`/proc/cpuinfo`)", info["cpu_model"]],
        ["Memory", f"{info['mem_total_gib']} GiB"],
        ["Kernel / Python", f"{info['kernel']} / {info['python']}"],
        ["Database", database],
        ["Redis", "a `redis-server` of each benchmark's own on a Unix socket (`collabadmin.embedded_redis`)"],
        ["HAProxy", _haproxy_version()],
        [
            "Libraries",
            ", ".join(
                f"{p} {package_version(p)}"
                for p in ("Django", "channels", "channels-redis", "celery", "uvicorn", "websockets")
            ),
        ],
        ["Load average (1 min) during the run", f"min {load['min']} · mean {load['mean']} · max {load['max']}"],
        ["Date (UTC)", info["date_utc"]],
    ]
    return "| | |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows)


def _haproxy_version() -> str:
    from bench._haproxy import haproxy_version

    return haproxy_version()


def write_docs(section: str) -> None:
    text = DOC.read_text()
    block = f"{START}\n{section.rstrip()}\n{END}"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    DOC.write_text(text)


def docs_section(meta: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    info, loads = meta["machine"], meta["load_1m"]
    return (
        f"## Issue 7: figures against the targets (`python -m bench.run`)\n\n"
        f"Generated by `.venv/bin/python -m bench.run{' --quick' if meta['quick'] else ''}"
        f"{' --profile' if meta.get('profile') else ''}` on {info['date_utc']}, "
        f"{meta['minutes']:.0f} minutes. The machine may be shared (other engineers' test runs), so its load "
        f"is part of the figures: the 1-minute load average was {loads['min']}–{loads['max']} "
        f"(mean {loads['mean']}) on {info['nproc']} cores during the run (sampled every 5 s).\n\n"
        f"### Machine\n\n{machine_table(info, loads, meta['database'])}\n\n"
        f"### Summary\n\n{summary_table(rows)}\n\n"
        f"### Per benchmark\n\n{detail_tables(meta['names'])}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer trials, smaller sizes")
    parser.add_argument("--only", default=None, help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--soak-seconds", type=float, default=None, help="failover_stall's soak (default 600)")
    parser.add_argument("--profile", action="store_true", help="py-spy where a benchmark supports it")
    parser.add_argument("--write-docs", action="store_true", help="write docs/performance.md even if partial/quick")
    parser.add_argument("--no-docs", action="store_true", help="do not write docs/performance.md")
    parser.add_argument(
        "--docs-only", action="store_true", help="run nothing: summary and docs from the last run's results"
    )
    args = parser.parse_args(argv)
    if args.docs_only:
        meta = load_result("run")
        if meta is None:
            parser.error("no bench/results/run.json: run the benchmarks first")
        rows = collect(meta["names"])
        print(summary_table(rows))
        write_docs(docs_section(meta, rows))
        print(f"written: {DOC.relative_to(REPO_ROOT)}")
        return 0
    names = BENCHMARKS if not args.only else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    # Start from a clean slate: a figure in the summary is always from this run.
    for name in names:
        (RESULTS_DIR / f"{name}.json").unlink(missing_ok=True)
    info = machine_info()
    failed = []
    started = time.monotonic()
    with LoadSampler() as load:
        for name in names:
            if name == "haproxy_side_by_side" and {"failover_crash", "failover_stall"} <= set(names):
                if load_result("failover_crash") and load_result("failover_stall"):
                    haproxy_from_trials(args.quick)
                    continue
            code, _ = run_child(name, args)
            if code != 0 and name != "admin_desktop":  # admin_desktop exits 1 when queries are not constant
                failed.append(name)
    rows = collect(names)
    meta = {
        "machine": info,
        "load_1m": load.summary(),
        "load_1m_samples": load.samples,
        "minutes": round((time.monotonic() - started) / 60, 1),
        "names": names,
        "quick": args.quick,
        "profile": args.profile,
        "database": "PostgreSQL (throwaway database)"
        if (os.environ.get("BENCH_DATABASE_URL") or os.environ.get("DATABASE_URL", "")).startswith("postgres")
        else "SQLite (throwaway file)",
        "failed": failed,
    }
    write_results("run", meta)
    loads = meta["load_1m"]
    print(f"\n=== summary ({meta['minutes']} min, load average 1 min: {loads}){' — QUICK run' if args.quick else ''}")
    print(summary_table(rows))
    met = sum(1 for r in rows if r["met"] is True)
    missed = sum(1 for r in rows if r["met"] is False)
    print(f"\ntargets met: {met}, missed: {missed}; machine: {info['nproc']} × {info['cpu_model']}")
    full = not args.quick and not args.only
    if (full or args.write_docs) and not args.no_docs:
        write_docs(docs_section(meta, rows))
        print(f"written: {DOC.relative_to(REPO_ROOT)}")
    if failed:
        print(f"FAILED to run: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
