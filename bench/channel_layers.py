"""Which Channels layer carries an administrator broadcast best: core (sorted sets) or pub/sub.

Workload: a ``group_send`` of a ~1 KB JSON event to a group of 1, 200 and 1,000 members.
The members live in ANOTHER process (the receiver, standing for the web process that
holds the desktops' WebSockets); this process is the sender (the Celery worker). By
default each broadcast is sent the way a Celery task sends it,
``async_to_sync(layer.group_send)(...)`` (a fresh event loop and connection pool per
call); ``--sender async`` sends from one long-lived event loop instead.

For each layer x Redis x group size, the sender sends ``--messages`` broadcasts at a
steady ``--rate``; the receiver records, for every member and every broadcast, the
receipt time. Both processes stamp ``time.monotonic_ns()`` (CLOCK_MONOTONIC, one clock
for the whole machine), so send-to-receipt latency is exact across processes. Reported:
send time (the sender's ``group_send`` call), send-to-receipt p50/p99 over all receipts,
broadcast completion (until the last member has it) p50/p99, the receiver process's CPU
use (% of one core, from READY until it stops waiting; 100 % = saturated), and delivery: every
member should get every broadcast exactly once; "undelivered" counts what had not
arrived when the receiver stopped waiting (nothing new for 1.5 s, or ``--grace``
seconds after the last send), "dup" what arrived twice.

Both Redis servers are measured: the machine's (``redis://127.0.0.1:6379/15``) and the
embedded one (``collabadmin.embedded_redis`` on a Unix socket under /tmp/bench-var).
Then, on the embedded Redis only (it is ours to restart), a robustness scenario restarts
Redis in the middle of a run and shows who still receives afterwards.

Layer settings (capacity, expiry, max_connections) come from the project's
``CHANNEL_LAYERS``; only the hosts and a unique key prefix are replaced. Keys are
removed after each run.

Run: ``/tmp/v/bin/python -m bench.channel_layers`` (``--help`` for the knobs).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import faulthandler
import importlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from asgiref.sync import async_to_sync

from bench._common import (
    BENCH_VAR_DIR,
    DEFAULT_REDIS_URL,
    BenchError,
    django_env,
    format_table,
    install_sigterm_handler,
    loadavg_1m,
    machine_info,
    managed_process,
    package_version,
    summarize,
    write_results,
)
from collabadmin import embedded_redis

BACKENDS = {
    "core": "channels_redis.core.RedisChannelLayer",
    "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
}
GROUP = "admin-broadcast"
#: A member whose receive() failed waits this long before rejoining (a desktop's reconnect back-off).
REJOIN_BACKOFF_S = 0.5
#: After the last send, the receiver stops waiting once nothing arrived for this long.
STALL_S = 1.5


def build_layer(backend: str, config: dict[str, Any]) -> Any:
    """Instantiate the layer class at dotted path ``backend`` with ``config``."""
    module_name, class_name = backend.rsplit(".", 1)
    return getattr(importlib.import_module(module_name), class_name)(**config)


def make_event(size: int = 1024) -> str:
    """A JSON administrator broadcast of about ``size`` bytes."""
    event = {
        "type": "admin.broadcast",
        "id": str(uuid.uuid4()),
        "severity": "warning",
        "title": "Scheduled maintenance",
        "body": "",
        "audience": {"servers": ["collab-1", "collab-2"], "roles": ["agent", "supervisor"]},
    }
    event["body"] = "m" * max(0, size - len(json.dumps(event)))
    return json.dumps(event)


def run_async(coro_factory: Callable[[], Any]) -> Any:
    """Run a coroutine on uvloop when available (as uvicorn would), else asyncio."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is in the virtualenv
        return asyncio.run(coro_factory())
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro_factory())


# --- Receiver process (the "web process") -------------------------------------------------


async def receiver_main(spec: dict[str, Any]) -> dict[str, Any]:
    """Join ``members`` channels to the group, report READY, count receipts until STOP + grace.

    A member whose ``receive()`` raises behaves like a desktop whose consumer died: after
    a short back-off it "reconnects" (a new channel, ``group_add`` again) and goes on.
    A member whose ``receive()`` never raises simply keeps waiting.
    """
    layer = build_layer(spec["backend"], spec["config"])
    members: int = spec["members"]
    messages: int = spec["messages"]
    seen = [bytearray(messages) for _ in range(members)]
    latencies_ms: list[float] = []
    last_receipt_ns = [0] * messages
    receipts_per_seq = [0] * messages
    totals = {"receipts": 0, "duplicates": 0, "receive_errors": 0, "rejoins": 0}
    first_errors: list[str] = []
    stopping = asyncio.Event()

    def note_error(exc: BaseException) -> None:
        """Count a failed receive or rejoin; keep the first few messages."""
        totals["receive_errors"] += 1
        if len(first_errors) < 5:
            first_errors.append(f"{type(exc).__name__}: {exc}")

    async def rejoin() -> str:
        """Back off, then take a new channel and join the group again (a reconnecting desktop)."""
        while True:
            await asyncio.sleep(REJOIN_BACKOFF_S)
            try:
                channel = await layer.new_channel()
                await layer.group_add(GROUP, channel)
            except Exception as exc:  # Redis still away: back off and try again
                note_error(exc)
                continue
            totals["rejoins"] += 1
            return channel

    async def member(index: int, channel: str) -> None:
        """One group member: receive forever, recording each broadcast's first receipt."""
        while True:
            try:
                message = await layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a Channels consumer dies here; its desktop reconnects
                if stopping.is_set():
                    return
                note_error(exc)
                channel = await rejoin()
                continue
            now = time.monotonic_ns()
            seq = message["seq"]
            if seen[index][seq]:
                totals["duplicates"] += 1
                continue
            seen[index][seq] = 1
            totals["receipts"] += 1
            receipts_per_seq[seq] += 1
            latencies_ms.append((now - message["sent_ns"]) / 1e6)
            last_receipt_ns[seq] = max(last_receipt_ns[seq], now)

    started = time.monotonic()
    channels = [await layer.new_channel() for _ in range(members)]
    for channel in channels:
        await layer.group_add(GROUP, channel)
    tasks = [asyncio.create_task(member(i, ch)) for i, ch in enumerate(channels)]
    await asyncio.sleep(0.2)  # let every member reach receive() (pub/sub: SUBSCRIBE acknowledged)
    cpu_started, wall_started = time.process_time(), time.monotonic()
    print(f"READY {time.monotonic() - started:.3f}", flush=True)

    loop = asyncio.get_running_loop()
    stop_line = await loop.run_in_executor(None, sys.stdin.readline)
    parts = stop_line.split()
    grace = float(parts[1]) if len(parts) > 1 else 5.0
    sent_ns = json.loads(parts[2]) if len(parts) > 2 else []
    expected = members * messages
    # Wait for stragglers: until everything arrived, nothing arrived for a second, or grace.
    deadline = time.monotonic() + grace
    last_count, last_progress = totals["receipts"], time.monotonic()
    while totals["receipts"] < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
        if totals["receipts"] != last_count:
            last_count, last_progress = totals["receipts"], time.monotonic()
        elif time.monotonic() - last_progress > STALL_S:
            break
    cpu_s, wall_s = time.process_time() - cpu_started, time.monotonic() - wall_started
    stopping.set()
    for task in tasks:
        task.cancel()
    _, pending = await asyncio.wait(tasks, timeout=5)
    if pending:
        first_errors.append(f"{len(pending)} members ignored cancellation")
    try:
        await asyncio.wait_for(layer.flush(), timeout=5)
    except Exception as exc:  # cleanup only; the main process deletes leftovers too
        first_errors.append(f"flush: {type(exc).__name__}: {exc}")

    completion_ms = [
        (last_receipt_ns[seq] - sent_ns[seq]) / 1e6
        for seq in range(min(messages, len(sent_ns)))
        if receipts_per_seq[seq] == members and sent_ns[seq]
    ]
    return {
        "members": members,
        "expected": expected,
        "received": totals["receipts"],
        "undelivered": expected - totals["receipts"],
        "duplicates": totals["duplicates"],
        "receive_errors": totals["receive_errors"],
        "rejoins": totals["rejoins"],
        "first_errors": first_errors,
        "members_complete": sum(1 for row in seen if all(row)),
        "latency_ms": summarize(latencies_ms),
        "completion_ms": summarize(completion_ms),
        "receiver_cpu_s": round(cpu_s, 3),
        "receiver_cpu_percent": round(100 * cpu_s / max(wall_s, 1e-9), 1),
        "receiver_cpu_us_per_receipt": round(cpu_s * 1e6 / max(1, totals["receipts"]), 1),
        "receipts_per_seq": receipts_per_seq,
    }


def receiver_entry(spec_json: str) -> int:
    """``python -m bench.channel_layers --receiver SPEC``: run and print ``RESULT {...}``."""
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 PID` dumps the stacks to the log
    spec = json.loads(spec_json)
    result = run_async(lambda: receiver_main(spec))
    print("RESULT " + json.dumps(result), flush=True)
    return 0


# --- Sender (the "worker process") ----------------------------------------------------------


@dataclass
class SendOutcome:
    """What the sender saw: per-message send time and start stamp, errors, lateness."""

    send_ms: list[float]
    sent_ns: list[int]
    errors: list[str]
    max_lateness_ms: float
    outage_s: float | None = None


def _message(seq: int, event: str) -> dict[str, Any]:
    """The Channels message of broadcast ``seq``, stamped with the send time."""
    return {"type": "admin.broadcast", "seq": seq, "sent_ns": time.monotonic_ns(), "text": event}


def send_as_task(
    layer: Any, count: int, rate: float, event: str, on_seq: Callable[[int], float | None] | None
) -> SendOutcome:
    """Send like a Celery task: ``async_to_sync(layer.group_send)`` per message, steady rate."""
    outcome = SendOutcome([], [0] * count, [], 0.0)
    first = time.monotonic() + 0.05
    for seq in range(count):
        if on_seq is not None and (outage := on_seq(seq)) is not None:
            outcome.outage_s = outage
            first += outage  # resume the steady rate instead of bursting to catch up
        due = first + seq / rate
        lateness = time.monotonic() - due
        if lateness < 0:
            time.sleep(-lateness)
        outcome.max_lateness_ms = max(outcome.max_lateness_ms, lateness * 1000)
        message = _message(seq, event)
        outcome.sent_ns[seq] = message["sent_ns"]
        started = time.perf_counter()
        try:
            async_to_sync(layer.group_send)(GROUP, message)
        except Exception as exc:  # a failed send is a figure, not a crash
            outcome.errors.append(f"{seq}: {type(exc).__name__}: {exc}")
        outcome.send_ms.append((time.perf_counter() - started) * 1000)
    return outcome


def send_async(
    layer: Any, count: int, rate: float, event: str, on_seq: Callable[[int], float | None] | None
) -> SendOutcome:
    """Send from one long-lived event loop (an async worker), steady rate."""

    async def sender() -> SendOutcome:
        outcome = SendOutcome([], [0] * count, [], 0.0)
        first = time.monotonic() + 0.05
        for seq in range(count):
            if on_seq is not None and (outage := on_seq(seq)) is not None:
                outcome.outage_s = outage
                first += outage  # resume the steady rate instead of bursting to catch up
            due = first + seq / rate
            lateness = time.monotonic() - due
            if lateness < 0:
                await asyncio.sleep(-lateness)
            outcome.max_lateness_ms = max(outcome.max_lateness_ms, lateness * 1000)
            message = _message(seq, event)
            outcome.sent_ns[seq] = message["sent_ns"]
            started = time.perf_counter()
            try:
                await layer.group_send(GROUP, message)
            except Exception as exc:  # a failed send is a figure, not a crash
                outcome.errors.append(f"{seq}: {type(exc).__name__}: {exc}")
            outcome.send_ms.append((time.perf_counter() - started) * 1000)
        # Close this loop's connections; core's flush() would also delete undelivered messages.
        close = getattr(layer, "close_pools", None) or layer.flush
        await close()
        return outcome

    return run_async(sender)


# --- One run ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A Redis server to measure on."""

    name: str
    url: str
    restartable: bool


def delete_prefix(url: str, prefix: str) -> int:
    """Remove every key starting with ``prefix`` (leftovers of a run)."""
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        return int(client.delete(*keys)) if keys else 0
    finally:
        client.close()


def run_one(
    layer_name: str,
    target: Target,
    members: int,
    args: argparse.Namespace,
    base_config: dict[str, Any],
    restart_at: int | None = None,
) -> dict[str, Any]:
    """One layer x Redis x group size run; the receiver is a subprocess, this process sends."""
    prefix = f"bench{uuid.uuid4().hex[:10]}"
    config = copy.deepcopy(base_config)
    config["hosts"] = [{**config["hosts"][0], "address": target.url}]
    config["prefix"] = prefix
    messages = args.messages if restart_at is None else args.restart_messages
    spec = {"backend": BACKENDS[layer_name], "config": config, "members": members, "messages": messages}
    argv = [sys.executable, "-m", "bench.channel_layers", "--receiver", json.dumps(spec)]
    log_path = BENCH_VAR_DIR / f"channel-layers-receiver-{layer_name}-{target.name}-{members}.log"
    event = make_event(args.event_bytes)
    result: dict[str, Any] = {
        "layer": layer_name,
        "redis": target.name,
        "members": members,
        "messages": messages,
        "loadavg_1m_before": loadavg_1m(),
    }

    def restart(seq: int) -> float | None:
        """Before broadcast ``restart_at``: restart the embedded Redis; returns the outage."""
        if seq != restart_at:
            return None
        started = time.monotonic()
        embedded_redis.stop(BENCH_VAR_DIR)
        embedded_redis.ensure_running(BENCH_VAR_DIR)
        return time.monotonic() - started

    try:
        with managed_process(
            argv, env=django_env(target.url), log_path=log_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        ) as proc:
            if proc.stdin is None or proc.stdout is None:
                raise BenchError("The receiver's pipes are missing.")
            ready = proc.stdout.readline()
            if not ready.startswith("READY"):
                raise BenchError(f"Receiver did not start: {ready!r}\n{log_path.read_text(errors='replace')[-2000:]}")
            result["join_s"] = float(ready.split()[1])
            layer = build_layer(BACKENDS[layer_name], config)
            send = send_as_task if args.sender == "task" else send_async
            outcome = send(layer, messages, args.rate, event, restart if restart_at is not None else None)
            proc.stdin.write(f"STOP {args.grace} {json.dumps(outcome.sent_ns, separators=(',', ':'))}\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
            if not line.startswith("RESULT "):
                raise BenchError(f"Receiver gave no result: {line!r}\n{log_path.read_text(errors='replace')[-2000:]}")
            received = json.loads(line[len("RESULT ") :])
    finally:
        try:
            result["leftover_keys_deleted"] = delete_prefix(target.url, prefix)
        except redis.RedisError as exc:
            result["leftover_keys_deleted"] = f"failed: {exc}"

    result.update(
        {
            "send_ms": summarize(outcome.send_ms),
            "send_errors": len(outcome.errors),
            "first_send_errors": outcome.errors[:5],
            "sender_max_lateness_ms": round(outcome.max_lateness_ms, 1),
            **{k: v for k, v in received.items() if k != "receipts_per_seq"},
        }
    )
    if restart_at is not None:
        per_seq = received["receipts_per_seq"]
        result["restart"] = {
            "at_message": restart_at,
            "outage_s": round(outcome.outage_s or 0.0, 3),
            "received_before": sum(per_seq[:restart_at]),
            "expected_before": members * restart_at,
            "received_after": sum(per_seq[restart_at:]),
            "expected_after": members * (messages - restart_at),
            "members_receiving_last": per_seq[-1],
        }
    return result


# --- Driver ---------------------------------------------------------------------------------


def project_layer_config(redis_url: str) -> dict[str, Any]:
    """The project's ``CHANNEL_LAYERS['default']['CONFIG']`` (settings read with DEBUG=1)."""
    os.environ.update(
        {k: v for k, v in django_env(redis_url).items() if k in {"DEBUG", "DJANGO_SETTINGS_MODULE", "REDIS_URL"}}
    )
    os.environ["COLLABADMIN_VAR_DIR"] = str(BENCH_VAR_DIR / "django")
    from django.conf import settings

    return copy.deepcopy(settings.CHANNEL_LAYERS["default"]["CONFIG"])


def table(results: Sequence[dict[str, Any]]) -> str:
    """The summary table printed and copied into docs/performance.md."""
    headers = [
        "layer",
        "redis",
        "members",
        "send p50 ms",
        "send p99 ms",
        "latency p50 ms",
        "latency p99 ms",
        "complete p99 ms",
        "recv CPU %",
        "undelivered",
        "dup",
        "errors (send/recv)",
    ]
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["layer"], r["redis"], r["members"], *["-"] * 8, r["error"][:40]])
            continue
        rows.append(
            [
                r["layer"],
                r["redis"],
                r["members"],
                r["send_ms"]["p50"],
                r["send_ms"]["p99"],
                r["latency_ms"]["p50"],
                r["latency_ms"]["p99"],
                r["completion_ms"]["p99"],
                r["receiver_cpu_percent"],
                f"{r['undelivered']}/{r['expected']}",
                r["duplicates"],
                f"{r['send_errors']}/{r['receive_errors']}",
            ]
        )
    return format_table(headers, rows)


def restart_table(results: Sequence[dict[str, Any]]) -> str:
    """The robustness scenario: who still receives after Redis restarts."""
    headers = [
        "layer",
        "members",
        "outage s",
        "before restart",
        "after restart",
        "members got last",
        "recv errors",
        "rejoins",
        "send err",
    ]
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["layer"], r["members"], *["-"] * 6, r["error"][:40]])
            continue
        s = r["restart"]
        rows.append(
            [
                r["layer"],
                r["members"],
                s["outage_s"],
                f"{s['received_before']}/{s['expected_before']}",
                f"{s['received_after']}/{s['expected_after']}",
                f"{s['members_receiving_last']}/{r['members']}",
                r["receive_errors"],
                r["rejoins"],
                r["send_errors"],
            ]
        )
    return format_table(headers, rows)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line knobs; the defaults keep one run under 3 minutes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--receiver", metavar="SPEC", help=argparse.SUPPRESS)
    parser.add_argument("--layers", default="core,pubsub", help="comma-separated: core,pubsub")
    parser.add_argument("--redis", default="machine,embedded", help="comma-separated: machine,embedded")
    parser.add_argument("--members", default="1,200,1000", help="group sizes (default 1,200,1000)")
    parser.add_argument("--messages", type=int, default=200, help="broadcasts per run (default 200)")
    parser.add_argument("--rate", type=float, default=20.0, help="broadcasts per second (default 20)")
    parser.add_argument("--event-bytes", type=int, default=1024, help="size of the JSON event (default 1024)")
    parser.add_argument("--grace", type=float, default=5.0, help="max seconds to wait for stragglers (default 5)")
    parser.add_argument("--sender", choices=("task", "async"), default="task", help="task = async_to_sync per send")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help="the machine's Redis (default db 15)")
    parser.add_argument("--restart-members", type=int, default=200, help="group size of the restart scenario (0: skip)")
    parser.add_argument("--restart-messages", type=int, default=100, help="broadcasts in the restart scenario")
    parser.add_argument("--output", default="channel_layers", help="results file name under bench/results/")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Every layer x Redis x group size, then the restart scenario; table and JSON."""
    args = parse_args(argv)
    if args.receiver:
        return receiver_entry(args.receiver)
    install_sigterm_handler()
    BENCH_VAR_DIR.mkdir(parents=True, exist_ok=True)
    base_config = project_layer_config(args.redis_url)

    sock = embedded_redis.socket_path(BENCH_VAR_DIR)
    started_embedded = False
    results: list[dict[str, Any]] = []
    restarts: list[dict[str, Any]] = []
    wall = time.monotonic()
    try:
        redis_names = [n.strip() for n in args.redis.split(",") if n.strip()]
        targets = []
        if "machine" in redis_names:
            targets.append(Target("machine", args.redis_url, restartable=False))
        if "embedded" in redis_names:
            started_embedded = not embedded_redis.answers(sock)
            targets.append(Target("embedded", f"unix://{embedded_redis.ensure_running(BENCH_VAR_DIR)}", True))
        layers = [n.strip() for n in args.layers.split(",") if n.strip()]
        sizes = [int(n) for n in args.members.split(",") if n.strip()]
        for target in targets:
            for layer_name in layers:
                for members in sizes:
                    print(f"--- {layer_name} {target.name} {members}", file=sys.stderr, flush=True)
                    results.append(_guarded(layer_name, target, members, args, base_config))
        embedded = next((t for t in targets if t.restartable), None)
        if embedded and args.restart_members > 0:
            for layer_name in layers:
                print(f"--- restart scenario: {layer_name}", file=sys.stderr, flush=True)
                restarts.append(
                    _guarded(
                        layer_name, embedded, args.restart_members, args, base_config, args.restart_messages * 2 // 5
                    )
                )
        data = {
            "benchmark": "channel_layers",
            "machine": machine_info({t.name: t.url for t in targets}),
            "versions": {p: package_version(p) for p in ("channels", "channels_redis", "redis", "msgpack", "asgiref")},
            "layer_config": {k: v for k, v in base_config.items() if k not in {"hosts", "prefix"}},
            "parameters": {k: v for k, v in vars(args).items() if k not in {"receiver", "output"}},
            "duration_s": round(time.monotonic() - wall, 1),
            "results": results,
            "restart_scenario": restarts,
        }
        print(table(results))
        if restarts:
            print("\nRedis restarted mid-run (embedded Redis):")
            print(restart_table(restarts))
        print(f"\nwritten: {write_results(args.output, data)} ({data['duration_s']} s)")
    finally:
        if started_embedded:
            embedded_redis.stop(BENCH_VAR_DIR)
    return 0


def _guarded(
    layer_name: str,
    target: Target,
    members: int,
    args: argparse.Namespace,
    base_config: dict[str, Any],
    restart_at: int | None = None,
) -> dict[str, Any]:
    """:func:`run_one`, with a failure recorded as a result instead of ending the benchmark."""
    try:
        return run_one(layer_name, target, members, args, base_config, restart_at)
    except (BenchError, OSError, redis.RedisError, embedded_redis.EmbeddedRedisError) as exc:
        print(f"    failed: {exc}", file=sys.stderr)
        return {"layer": layer_name, "redis": target.name, "members": members, "error": str(exc)}


if __name__ == "__main__":
    raise SystemExit(main())
