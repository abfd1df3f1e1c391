"""Side by side with HAProxy (issue 7, point 3): the same two simulator processes, the same kill.

One HAProxy process (Debian's ``haproxy``, ``/usr/sbin/haproxy``) checks the Media Blender
pair of the failover benchmarks as an active/backup pair, in two backends:

* ``be_default``: its default check timing, ``check inter 2s fall 3 rise 2``;
* ``be_tuned``: our default Policy's timing, ``inter 500ms fastinter 50ms fall 2 rise 2``
  with ``timeout check 400ms`` (probe interval 500 ms, time-out 400 ms, fall 2, and the
  50 ms re-probe after a failure that our monitor also does).

The check is a ``tcp-check`` that speaks the simulator's line protocol: connect, send
``{"id":1,"op":"ping"}``, expect ``"ok":true``. A plain ``check`` (TCP connect only) would
see a SIGKILL the same way (the port refuses) but never a SIGSTOP: the kernel still
accepts connections for a stopped process. HAProxy's state is read from its stats socket
(``show servers state``) every 5 ms; the moment the active server is seen ``DOWN`` is its
detection time, and a request through the backend's frontend right then shows that the
backup answers. Our figure is the database's (the standby connected), measured in the very
same trials; the ratio is ours / HAProxy's.

Run: ``.venv/bin/python -m bench.haproxy_side_by_side [--quick] [--trials N]`` runs crash
and stall trials (``bench.failover_crash`` and ``bench.failover_stall`` already measure
HAProxy in their trials; ``bench.run`` reuses their results instead of running twice).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from bench._common import format_table, percentile, write_results
from bench._haproxy import BACKENDS, haproxy_version

# --- the side-by-side table ----------------------------------------------------------------------


def side_by_side(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of ours / HAProxy from the trials of the crash and stall benchmarks."""
    rows = []
    for scenario, data in results.items():
        trials = data.get("trials", [])
        ours = [t["db_s"] for t in trials if t.get("db_s") is not None]
        for backend in BACKENDS:
            theirs = [t[f"haproxy_{backend}_s"] for t in trials if t.get(f"haproxy_{backend}_s") is not None]
            if not ours or not theirs:
                continue
            backup_ok = sum(1 for t in trials if t.get(f"haproxy_{backend}_served_by", "").endswith("-mb-2"))
            ours50, ours99 = percentile(ours, 50), percentile(ours, 99)
            theirs50, theirs99 = percentile(theirs, 50), percentile(theirs, 99)
            rows.append(
                {
                    "scenario": scenario,
                    "haproxy": backend,
                    "haproxy_options": BACKENDS[backend][0],
                    "n": min(len(ours), len(theirs)),
                    "ours_p50_s": round(ours50, 3),
                    "ours_p99_s": round(ours99, 3),
                    "haproxy_p50_s": round(theirs50, 3),
                    "haproxy_p99_s": round(theirs99, 3),
                    "ratio_p50": round(ours50 / theirs50, 3) if theirs50 else None,
                    "ratio_p99": round(ours99 / theirs99, 3) if theirs99 else None,
                    "backup_served": f"{backup_ok}/{len(theirs)}",
                }
            )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    headers = ["scenario", "HAProxy", "n", "ours p50/p99 s", "HAProxy p50/p99 s", "ours/HAProxy p50", "p99", "backup"]
    return format_table(
        headers,
        [
            [
                r["scenario"],
                f"{r['haproxy']} ({r['haproxy_options']})",
                r["n"],
                f"{r['ours_p50_s']:.3f} / {r['ours_p99_s']:.3f}",
                f"{r['haproxy_p50_s']:.3f} / {r['haproxy_p99_s']:.3f}",
                f"{r['ratio_p50']:.3f}" if r["ratio_p50"] is not None else "-",
                f"{r['ratio_p99']:.3f}" if r["ratio_p99"] is not None else "-",
                r["backup_served"],
            ]
            for r in rows
        ],
    )


def figures(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Summary rows for ``bench.run``: far ahead of the default, no slower than the tuned one."""
    out = []
    for r in rows:
        if r["haproxy"] == "default":
            target, ok = "ratio p99 ≤ 0.5 (far ahead)", r["ratio_p99"] is not None and r["ratio_p99"] <= 0.5
        else:
            target, ok = "ratio p99 ≤ 1.0", r["ratio_p99"] is not None and r["ratio_p99"] <= 1.0
        out.append(
            {
                "benchmark": "haproxy_side_by_side",
                "figure": f"{r['scenario']}: ours/HAProxy {r['haproxy']} (DB)",
                "value": f"p50 {r['ratio_p50']} · p99 {r['ratio_p99']} "
                f"(HAProxy p50 {r['haproxy_p50_s']:.3f} / p99 {r['haproxy_p99_s']:.3f} s)",
                "target": target,
                "met": ok,
            }
        )
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 trials per scenario (a smoke run)")
    parser.add_argument("--trials", type=int, default=None, help="trials per scenario (default 20)")
    parser.add_argument("--output", default="haproxy_side_by_side")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from bench import failover_crash

    args = parse_args(argv)
    trials = args.trials or (5 if args.quick else 20)
    results = failover_crash.run_scenarios(["crash", "stall"], trials=trials, haproxy=True, soak_seconds=0)
    rows = side_by_side(results)
    print(table(rows))
    data = {
        "benchmark": "haproxy_side_by_side",
        "haproxy_version": haproxy_version(),
        "rows": rows,
        "figures": figures(rows),
        "scenarios": results,
    }
    print(f"\nwritten: {write_results(args.output, data)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
