"""Run the whole product in the foreground: ``python -m collabadmin.stack``.

Starts every process of the stack as a child (the web server, a Celery worker, the
notifier worker, Celery beat), prefixes their output with their name, and stops them all on Ctrl-C or SIGTERM.
A web node or simulator that dies is reported, not restarted: killing one is how the demo
shows a failure. The workers and beat are supervised as production's supervisor would:
started again when they exit, and the workers also when they stop taking work (their
liveness status, collabadmin/worker_watchdog.py). Used by ``bin/run``; production runs each process
under its own supervisor (systemd, Kubernetes) with the same commands, listed by ``--print``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from collabadmin import embedded_redis, worker_watchdog

STOP_GRACE_SECONDS = 10.0
# How often a supervised child's liveness is probed, and how its restarts back off.
LIVENESS_EVERY_SECONDS = 2.0
QUICK_DEATH_SECONDS = 10.0
RESTART_BACKOFF_MAX_SECONDS = 30.0
# The notifier's threads: a delivery mostly waits on a receiver, so many cheap threads
# (a receiver that is slow holds one of them, not a process the failover needs).
NOTIFIER_THREADS = 20


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: list[str]
    env: dict[str, str]
    # Started again when it exits (production runs it under a supervisor that does so).
    supervised: bool = False
    # A worker's status file (collabadmin/worker_watchdog.py): probed for liveness.
    status_file: str | None = None


def stack_processes(*, host: str, port: int, simulators: bool = True) -> list[ProcessSpec]:
    """The processes of the stack, with the commands production would use too.

    One web node per configured server whose ``base_url`` is on this machine (each node
    also runs the health monitor; one acts, by lease), a simulator per local peer, one
    Celery worker, the notifier (the notification tasks' worker) and one beat. Without
    configured servers: a single web node on ``port``.
    """
    python = sys.executable
    specs = [*_web_nodes(python, host, port), *(_simulators(python) if simulators else [])]
    return [*specs, worker_spec(), *notifier_specs(), beat_spec()]


def _celery_level() -> str:
    # Celery's INFO logs a line per task; beat sends one every second (transit time-outs),
    # which would bury what matters. COLLABADMIN_CELERY_LOGLEVEL=INFO brings it back.
    return os.environ.get("COLLABADMIN_CELERY_LOGLEVEL", "WARNING")


def worker_spec(*, name: str = "worker", queue: str | None = None) -> ProcessSpec:
    """The Celery worker: supervised, and probed through its status file."""
    from django.conf import settings

    # --quiet: no start-up banner printed as plain text; its log lines are JSON (issue 15).
    argv = [sys.executable, "-m", "celery", "-A", "collabadmin", "--quiet", "worker", "--loglevel", _celery_level()]
    argv += ["--concurrency", "2", *(["-Q", queue] if queue else [])]
    status_file = str(settings.WORKER_STATUS_FILE)
    return ProcessSpec(
        name, argv, {"COLLABADMIN_WORKER_STATUS_FILE": status_file}, supervised=True, status_file=status_file
    )


def notifier_specs() -> list[ProcessSpec]:
    """The notifier: a worker of many threads on the notification tasks' queue alone, with
    a status file of its own (a worker's watchdog writes one per process). None when
    ``NOTIFY_QUEUE`` is empty (the ordinary worker then sends the notifications)."""
    from django.conf import settings

    if not settings.NOTIFY_QUEUE:
        return []
    argv = [sys.executable, "-m", "celery", "-A", "collabadmin", "--quiet", "worker", "--loglevel", _celery_level()]
    # --notifier: the queue named NOTIFY_QUEUE alone (collabadmin/celery.py).
    argv += ["--notifier", "--pool", "threads", "--concurrency", str(NOTIFIER_THREADS)]
    # A node name of its own: two workers named alike on one host confuse Celery's control.
    argv += ["-n", "notifier@%h"]
    status_file = str(Path(settings.WORKER_STATUS_FILE).with_name("celery-notifier.json"))
    env = {"COLLABADMIN_WORKER_STATUS_FILE": status_file}
    return [ProcessSpec("notifier", argv, env, supervised=True, status_file=status_file)]


def beat_spec() -> ProcessSpec:
    """Celery beat: supervised (nothing in the demo shows a failure by killing it)."""
    schedule = os.path.join(_var_dir(), "celerybeat-schedule")
    # --quiet: no start-up banner printed as plain text; its log lines are JSON (issue 15).
    argv = [sys.executable, "-m", "celery", "-A", "collabadmin", "--quiet", "beat", "--loglevel", _celery_level()]
    return ProcessSpec("beat", [*argv, "--schedule", schedule], {}, supervised=True)


LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def _uvicorn(python: str, host: str, port: int) -> list[str]:
    return [
        python,
        "-m",
        "uvicorn",
        "collabadmin.asgi:application",
        "--host",
        host,
        "--port",
        str(port),
        "--no-access-log",
        "--lifespan",
        "on",
    ]


def _web_nodes(python: str, host: str, port: int) -> list[ProcessSpec]:
    from failover.models import Server

    nodes = []
    for server in Server.objects.exclude(base_url="").order_by("name"):
        url = urlsplit(server.base_url)
        if url.hostname in LOCAL_HOSTS and url.port:
            nodes.append(
                ProcessSpec(server.name, _uvicorn(python, host, url.port), {"COLLABADMIN_SERVER_NAME": server.name})
            )
    return nodes or [ProcessSpec("web", _uvicorn(python, host, port), {})]


def _simulators(python: str) -> list[ProcessSpec]:
    from failover.models import Peer

    specs = []
    for peer in Peer.objects.filter(host__in=LOCAL_HOSTS).select_related("server").order_by("port"):
        kind = peer.kind.replace("_", "-")
        argv = [python, "-m", "failover.peering", kind, "--port", str(peer.port), "--name", peer.name]
        if kind == "admin-workstation":
            # Both AWs of a server's pair front one ICM: a change written through one is
            # what the other serves, so a switchover alone shows no difference. The file
            # survives restarts, like a real ICM database.
            argv += ["--icm-store", str(icm_store_path(peer.server.name))]
        specs.append(ProcessSpec(peer.name, argv, {}))
    return specs


def icm_store_path(server_name: str) -> Path:
    """The simulated ICM database the Admin Workstations of ``server_name`` share."""
    return Path(_var_dir()) / f"icm-{server_name}.json"


def _var_dir() -> str:
    from django.conf import settings

    return str(settings.VAR_DIR)


@dataclass
class _Child:
    spec: ProcessSpec
    process: subprocess.Popen[bytes]
    started_at: float
    restart_at: float | None = None  # when an exited supervised child is due to start again
    restarts_in_a_row: int = 0


class Stack:
    """Children started together and stopped together.

    A child that dies is reported and left dead, except a **supervised** one (the Celery
    workers and beat), which is started again as production's supervisor would, after a
    back-off that grows while it keeps dying. A supervised child with a status file is
    also probed for liveness every few seconds, and killed and started again when the
    probe fails (collabadmin/worker_watchdog.py: a worker that stays alive but stopped
    taking work, or whose process hangs).
    """

    def __init__(self, specs: list[ProcessSpec]) -> None:
        self.specs = specs
        self.children: dict[str, _Child] = {}
        self.stopping = False
        self.selector = selectors.DefaultSelector()

    def start(self) -> None:
        for spec in self.specs:
            self._launch(spec)

    def _launch(self, spec: ProcessSpec) -> None:
        process = subprocess.Popen(
            spec.argv,
            env={**os.environ, **spec.env, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Own process group: Ctrl-C reaches the stack, which then stops each child
            # in order, instead of every child racing to shut down at once.
            start_new_session=True,
        )
        previous = self.children.get(spec.name)
        self.children[spec.name] = _Child(
            spec, process, time.monotonic(), restarts_in_a_row=previous.restarts_in_a_row if previous else 0
        )
        assert process.stdout is not None
        self.selector.register(process.stdout, selectors.EVENT_READ, spec.name)
        self._say(spec.name, f"started (pid {process.pid}): {' '.join(spec.argv)}")

    def pump(self) -> None:
        """Copy children's output, prefixed, restart supervised children, until every
        child has exited (or the stack is stopping)."""
        next_probe = time.monotonic() + LIVENESS_EVERY_SECONDS
        while self.selector.get_map() or self._restarts_due():
            for key, _ in self.selector.select(timeout=0.5):
                line = key.fileobj.readline()  # type: ignore[union-attr]
                if line:
                    self._say(key.data, line.decode(errors="replace").rstrip())
                else:
                    self.selector.unregister(key.fileobj)
                    key.fileobj.close()  # type: ignore[union-attr]
                    self._exited(self.children[key.data])
            now = time.monotonic()
            for child in list(self.children.values()):
                if child.restart_at is not None and now >= child.restart_at and not self.stopping:
                    self._launch(child.spec)
            if now >= next_probe:
                next_probe = now + LIVENESS_EVERY_SECONDS
                self._probe_liveness()

    def _restarts_due(self) -> bool:
        return not self.stopping and any(child.restart_at is not None for child in self.children.values())

    def _exited(self, child: _Child) -> None:
        # Its pool processes too, if its main process left them; before reaping it, so
        # that its process group id cannot have been reused.
        if child.spec.supervised and not self.stopping:
            _kill_group(child.process)
        code = child.process.wait()
        if self.stopping:
            return
        if not child.spec.supervised:
            self._say(child.spec.name, f"exited with code {code} (the rest keeps running)")
            return
        # Started again at once, unless it keeps dying soon after starting: then 1, 3, 7,
        # 15, 30 s later (a broken configuration must not spin).
        if time.monotonic() - child.started_at >= QUICK_DEATH_SECONDS:
            child.restarts_in_a_row = 0
        delay = min(RESTART_BACKOFF_MAX_SECONDS, 2.0**child.restarts_in_a_row - 1)
        child.restarts_in_a_row += 1
        child.restart_at = time.monotonic() + delay
        self._say(child.spec.name, f"exited with code {code}; starting it again in {delay:.0f} s")

    def _probe_liveness(self) -> None:
        for child in self.children.values():
            path = child.spec.status_file
            if path is None or child.restart_at is not None or child.process.poll() is not None:
                continue
            status = worker_watchdog.read_status(Path(path))
            if status is not None and status.get("pid") != child.process.pid:
                status = None  # the file of the process this one replaced
            age = time.monotonic() - child.started_at
            if status is None and age < worker_watchdog.START_GRACE_SECONDS:
                continue  # not written yet: still importing
            problem = worker_watchdog.liveness_problem(status, now=time.time())
            if problem is not None and not (status and status.get("state") == "stuck" and _leaving(status)):
                self._say(child.spec.name, f"not live ({problem}); killing it to start a fresh one")
                _kill_group(child.process)

    def stop(self) -> None:
        self.stopping = True
        for name, child in reversed(self.children.items()):
            if child.process.poll() is None:
                self._say(name, "stopping")
                child.process.terminate()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for name, child in self.children.items():
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._say(name, "did not stop in time; killing")
                child.process.kill()

    @staticmethod
    def _say(name: str, text: str) -> None:
        sys.stdout.write(f"{name:>16} | {text}\n")
        sys.stdout.flush()


def _leaving(status: dict[str, object]) -> bool:
    """A worker that found itself stuck leaves by itself within its grace: let it."""
    since = status.get("stuck_since")
    return isinstance(since, int | float) and time.time() - since < worker_watchdog.EXIT_GRACE_SECONDS + 5


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _interrupt(signum: int, frame: object) -> None:
    # SIGTERM (from systemd, a test or CI) stops the stack the same way Ctrl-C does.
    raise KeyboardInterrupt


def handle_stop_signals() -> None:
    """SIGINT and SIGTERM both stop the stack, and with it every child.

    SIGINT needs a handler of its own: a shell starts a background job (``bin/run &``)
    with SIGINT ignored, and Python then leaves it ignored, so ``kill -INT`` to the job's
    process group did nothing (issue 15). The children, each in a session of its own, are
    not in that group: the stack stops them one by one (``Stack.stop``).
    """
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run every process of collabadmin in the foreground.")
    parser.add_argument("--host", default=os.environ.get("COLLABADMIN_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("COLLABADMIN_PORT", "8000")))
    parser.add_argument("--print", action="store_true", help="Print the commands and exit.")
    parser.add_argument("--no-simulators", action="store_true", help="Do not start the peer simulators.")
    parser.add_argument(
        "--keep-redis",
        action="store_true",
        help="Leave the embedded Redis running after the stack stops (by default it stops with it).",
    )
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "collabadmin.settings")
    import django

    django.setup()  # Starts (or finds) the embedded Redis before any child needs it.
    specs = stack_processes(host=args.host, port=args.port, simulators=not args.no_simulators)
    if args.print:
        for spec in specs:
            env = " ".join(f"{key}={value}" for key, value in spec.env.items())
            print(f"{spec.name}: {env + ' ' if env else ''}{' '.join(spec.argv)}")
        return 0

    stack = Stack(specs)
    handle_stop_signals()
    try:
        stack.start()
        first_web = next(spec for spec in specs if "uvicorn" in spec.argv)
        url = f"http://{args.host}:{first_web.argv[first_web.argv.index('--port') + 1]}/"
        Stack._say("stack", f"collabadmin is starting at {url} (API docs: {url}api/v1/docs/). Ctrl-C stops it.")
        stack.pump()
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
        if not args.keep_redis:
            _stop_embedded_redis()
    return 0


def _stop_embedded_redis() -> None:
    """Ctrl-C stops everything the demo started, the embedded Redis too (a daemon, shared by
    every process under ``var/``, so it would otherwise outlive the stack). After the
    children: none of them needs it any more. A Redis given by ``REDIS_URL`` is not ours."""
    from django.conf import settings

    if settings.REDIS_EMBEDDED and embedded_redis.stop(settings.VAR_DIR):
        Stack._say("stack", "stopped the embedded Redis")


if __name__ == "__main__":
    sys.exit(main())
