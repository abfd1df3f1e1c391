"""Small helpers shared by the benchmarks: ports, percentiles, tables, child processes.

Every child process is started in its own session (process group) so that stopping it
also stops what it forked (granian's worker, for instance). :func:`managed_process`
stops the group in a ``finally`` block, so a benchmark interrupted with Ctrl-C (or
SIGTERM, see :func:`install_sigterm_handler`) leaves nothing running.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import redis

REPO_ROOT = Path(__file__).resolve().parent.parent
#: Where figures go as JSON; ``BENCH_RESULTS_DIR`` moves them (the smoke test uses a temporary folder).
RESULTS_DIR = Path(os.environ.get("BENCH_RESULTS_DIR") or REPO_ROOT / "bench" / "results")
#: The machine's Redis; db 15 is reserved for benchmarks (keys are prefixed and removed after).
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"
#: Working folder of the benchmarks: the embedded Redis, logs, the Django var dir.
BENCH_VAR_DIR = Path("/tmp/bench-var")  # noqa: S108 (a fixed, documented place; nothing secret lives there)


class BenchError(RuntimeError):
    """A benchmark could not run (a server did not start, a tool is missing...)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile (0-100) of ``values`` with linear interpolation; NaN if empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(values: Sequence[float], *, digits: int = 3) -> dict[str, float | int | None]:
    """Count, p50, p99 and max of ``values`` (already in the unit wanted), rounded."""

    def rounded(value: float) -> float | None:
        """NaN (no values) becomes None, which JSON can carry."""
        return None if math.isnan(value) else round(value, digits)

    return {
        "n": len(values),
        "p50": rounded(percentile(values, 50)),
        "p99": rounded(percentile(values, 99)),
        "max": rounded(max(values)) if values else None,
    }


def fmt(value: object, digits: int = 2) -> str:
    """A table cell: floats rounded, None as a dash."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (readable as plain text too) with right-aligned numbers."""
    cells = [[fmt(cell) for cell in row] for row in rows]
    widths = [max(len(h), *(len(row[i]) for row in cells)) if cells else len(h) for i, h in enumerate(headers)]

    def line(items: Sequence[str]) -> str:
        return "| " + " | ".join(item.rjust(width) for item, width in zip(items, widths, strict=True)) + " |"

    separator = "|" + "|".join("-" * (width + 1) + ":" for width in widths) + "|"
    return "\n".join([line(headers), separator, *(line(row) for row in cells)])


def package_version(distribution: str) -> str:
    """The installed version of ``distribution``, or ``"missing"``."""
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "missing"


def django_env(redis_url: str, **extra: str) -> dict[str, str]:
    """Environment for a Django process of this project, isolated from the real ``var/``.

    ``REDIS_URL`` is always set so that no process starts the embedded Redis under the
    repository's ``var/``; ``COLLABADMIN_VAR_DIR`` keeps SQLite and logs under
    :data:`BENCH_VAR_DIR`.
    """
    env = dict(os.environ)
    env.update(
        {
            "DEBUG": "1",
            "DJANGO_SETTINGS_MODULE": "collabadmin.settings",
            "REDIS_URL": redis_url,
            "COLLABADMIN_VAR_DIR": str(BENCH_VAR_DIR / "django"),
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(REPO_ROOT),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def install_sigterm_handler() -> None:
    """Turn SIGTERM (and SIGINT, even if inherited as ignored) into KeyboardInterrupt.

    The ``finally`` blocks then stop the children whichever way the benchmark is ended.
    """

    def _raise(signum: int, frame: object) -> None:
        """The handler: unwind the stack like Ctrl-C does."""
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _raise)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def stop_process(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """Stop ``proc`` and its process group: SIGTERM, then SIGKILL after ``timeout``."""
    if proc.poll() is not None:
        return
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)
    # A worker forked by the server may outlive its parent for a moment.
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


@contextmanager
def managed_process(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    log_path: Path | None = None,
    stdin: int | None = subprocess.DEVNULL,
    stdout: int | None = None,
    stop_timeout: float = 10.0,
) -> Iterator[subprocess.Popen[str]]:
    """Run ``argv`` in its own process group for the duration of the ``with`` block.

    Output goes to ``log_path`` unless ``stdout`` is given (e.g. ``subprocess.PIPE``).
    The group is stopped on exit, whatever happened inside.
    """
    log_file = open(log_path, "w") if log_path else None  # closed in the finally below
    try:
        proc = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=REPO_ROOT,
            stdin=stdin,
            stdout=stdout if stdout is not None else (log_file or subprocess.DEVNULL),
            stderr=log_file or subprocess.DEVNULL,
            start_new_session=True,
            text=True,
        )
        try:
            yield proc
        finally:
            stop_process(proc, stop_timeout)
    finally:
        if log_file:
            log_file.close()


def http_get(host: str, port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """One plain GET; returns (status, body)."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def wait_for_http(
    proc: subprocess.Popen[Any], port: int, path: str = "/healthz", timeout: float = 30.0, log_path: Path | None = None
) -> float:
    """Wait until ``GET path`` answers 200; return the seconds it took. Fails fast if ``proc`` dies."""
    started = time.monotonic()
    deadline = started + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"The server exited with {proc.returncode} before answering.\n{tail(log_path)}")
        with suppress(OSError, http.client.HTTPException):
            status, _ = http_get("127.0.0.1", port, path, timeout=1.0)
            if status == 200:
                return time.monotonic() - started
        time.sleep(0.05)
    raise BenchError(f"No 200 from http://127.0.0.1:{port}{path} within {timeout}s.\n{tail(log_path)}")


def tail(path: Path | None, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file, for error messages."""
    if path is None:
        return ""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def process_group_rss_mb(pgid: int) -> float:
    """Resident memory (MiB) of all processes in group ``pgid``, read from /proc."""
    total_kb = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            # Field 5 (pgrp) comes after the parenthesised command name.
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) != pgid:
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return round(total_kb / 1024, 1)


def redis_version(url: str) -> str:
    """``redis_version`` reported by the server at ``url``."""
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        return str(client.info("server")["redis_version"])
    finally:
        client.close()


def machine_info(redis_urls: Mapping[str, str] | None = None) -> dict[str, Any]:
    """CPU count and model, memory, Python and Redis versions: the context of the figures."""
    cpu_model = "unknown"
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mem_total_gib = None
    with suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "mem_total_gib": mem_total_gib,
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        # The machine may be shared: a load above 0 at the start means someone else is busy too.
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    for name, url in (redis_urls or {}).items():
        try:
            info[f"redis_{name}"] = redis_version(url)
        except redis.RedisError as exc:
            info[f"redis_{name}"] = f"unreachable: {exc}"
    return info


def machine_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all cores, every process), from
    /proc/stat: the difference over a run divided by its duration is cores in use."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def loadavg_1m() -> float:
    """The 1-minute load average: how busy the machine was (other users included)."""
    return round(os.getloadavg()[0], 2)


def write_results(name: str, data: Mapping[str, Any]) -> Path:
    """Write ``data`` as ``bench/results/<name>.json`` and return the path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return path
