"""Run the whole product in the foreground: ``python -m collabadmin.stack``.

Starts every process of the stack as a child (the web server, a Celery worker, Celery
beat), prefixes their output with their name, and stops them all on Ctrl-C or SIGTERM.
A child that dies is reported, not restarted: killing a process is how the demo shows a
failure. Used by ``bin/run``; production runs each process under its own supervisor
(systemd, Kubernetes) with the same commands, listed by ``--print``.
"""

from __future__ import annotations

import argparse
import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

STOP_GRACE_SECONDS = 10.0


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: list[str]
    env: dict[str, str]


def stack_processes(*, host: str, port: int, simulators: bool = True) -> list[ProcessSpec]:
    """The processes of the stack, with the commands production would use too.

    One web node per configured server whose ``base_url`` is on this machine (each node
    also runs the health monitor; one acts, by lease), a simulator per local peer, one
    Celery worker and one beat. Without configured servers: a single web node on ``port``.
    """
    python = sys.executable
    specs = [*_web_nodes(python, host, port), *(_simulators(python) if simulators else [])]
    # Celery's INFO logs a line per task; beat sends one every second (transit time-outs),
    # which would bury what matters. COLLABADMIN_CELERY_LOGLEVEL=INFO brings it back.
    celery_level = os.environ.get("COLLABADMIN_CELERY_LOGLEVEL", "WARNING")
    specs.append(
        ProcessSpec(
            "worker",
            [python, "-m", "celery", "-A", "collabadmin", "worker", "--loglevel", celery_level, "--concurrency", "2"],
            {},
        )
    )
    specs.append(
        ProcessSpec(
            "beat",
            [
                python,
                "-m",
                "celery",
                "-A",
                "collabadmin",
                "beat",
                "--loglevel",
                celery_level,
                "--schedule",
                os.path.join(_var_dir(), "celerybeat-schedule"),
            ],
            {},
        )
    )
    return specs


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
    for peer in Peer.objects.filter(host__in=LOCAL_HOSTS).order_by("port"):
        kind = peer.kind.replace("_", "-")
        argv = [python, "-m", "failover.peering", kind, "--port", str(peer.port), "--name", peer.name]
        if kind == "admin-workstation":
            # The simulated ICM configuration survives restarts, like a real one.
            argv += ["--data", os.path.join(_var_dir(), f"icm-{peer.name}.json")]
        specs.append(ProcessSpec(peer.name, argv, {}))
    return specs


def _var_dir() -> str:
    from django.conf import settings

    return str(settings.VAR_DIR)


class Stack:
    """Children started together and stopped together."""

    def __init__(self, specs: list[ProcessSpec]) -> None:
        self.specs = specs
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.stopping = False

    def start(self) -> None:
        for spec in self.specs:
            self.children[spec.name] = subprocess.Popen(
                spec.argv,
                env={**os.environ, **spec.env, "PYTHONUNBUFFERED": "1"},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # Own process group: Ctrl-C reaches the stack, which then stops each child
                # in order, instead of every child racing to shut down at once.
                start_new_session=True,
            )
            self._say(spec.name, f"started (pid {self.children[spec.name].pid}): {' '.join(spec.argv)}")

    def pump(self) -> None:
        """Copy children's output, prefixed, until every child has exited."""
        selector = selectors.DefaultSelector()
        for name, child in self.children.items():
            assert child.stdout is not None
            selector.register(child.stdout, selectors.EVENT_READ, name)
        open_streams = len(self.children)
        while open_streams:
            for key, _ in selector.select(timeout=0.5):
                line = key.fileobj.readline()  # type: ignore[union-attr]
                if line:
                    self._say(key.data, line.decode(errors="replace").rstrip())
                else:
                    selector.unregister(key.fileobj)
                    open_streams -= 1
                    code = self.children[key.data].wait()
                    if not self.stopping:
                        self._say(key.data, f"exited with code {code} (the rest keeps running)")

    def stop(self) -> None:
        self.stopping = True
        for name, child in reversed(self.children.items()):
            if child.poll() is None:
                self._say(name, "stopping")
                child.terminate()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for name, child in self.children.items():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._say(name, "did not stop in time; killing")
                child.kill()

    @staticmethod
    def _say(name: str, text: str) -> None:
        sys.stdout.write(f"{name:>16} | {text}\n")
        sys.stdout.flush()


def _interrupt(signum: int, frame: object) -> None:
    # SIGTERM (from systemd, a test or CI) stops the stack the same way Ctrl-C does.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run every process of collabadmin in the foreground.")
    parser.add_argument("--host", default=os.environ.get("COLLABADMIN_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("COLLABADMIN_PORT", "8000")))
    parser.add_argument("--print", action="store_true", help="Print the commands and exit.")
    parser.add_argument("--no-simulators", action="store_true", help="Do not start the peer simulators.")
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
    signal.signal(signal.SIGTERM, _interrupt)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
