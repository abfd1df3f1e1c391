"""Failover after a stall (issue 7, point 2): SIGSTOP of the connected Media Blender.

The same stack and trials as ``bench/failover_crash.py`` (read its docstring), with SIGSTOP
instead of SIGKILL: the process stops answering but its sockets stay open (no reset), so
only probe time-outs reveal it (default Policy: 500 ms interval, 400 ms time-out, fall 2,
a 50 ms re-probe after a failure). After each trial the simulator gets SIGCONT.

Then a **soak**: ten more healthy pairs (one simulator process serving 20 peers) watched by
the same monitor for ``--soak-seconds`` (600 by default; 20 with ``--quick``) while two
busy loops (one per core) load the machine on top of whatever else runs; any switchover or
peer health change on those pairs is a false one.

Run: ``.venv/bin/python -m bench.failover_stall [--quick] [--trials N] [--soak-seconds S]``.
"""

from __future__ import annotations

from collections.abc import Sequence

from bench import failover_crash


def main(argv: Sequence[str] | None = None) -> int:
    return failover_crash.main(argv, scenario="stall")


if __name__ == "__main__":
    raise SystemExit(main())
