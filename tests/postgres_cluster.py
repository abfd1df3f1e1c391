"""A PostgreSQL cluster of the test's own, which the test may stop, start and restart.

The machine's PostgreSQL is shared: a test that restarts a database server starts its
own with Debian's ``initdb`` and ``pg_ctl`` (data in a temporary folder, a free port,
trust authentication on loopback only), runs as the ``postgres`` user when the tests run
as root (``initdb`` refuses root), and removes everything afterwards.

Without the PostgreSQL binaries such a test is skipped, unless
``COLLABADMIN_REQUIRE_POSTGRES=1`` (CI sets it), which makes their absence a failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import free_port

BINARIES = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))


def postgres_bin() -> Path:
    """The newest installed PostgreSQL's bin folder; skips (or fails, when required) without one."""
    if BINARIES:
        return BINARIES[-1].parent
    message = "PostgreSQL server binaries are missing (apt-get install -y postgresql)"
    if os.environ.get("COLLABADMIN_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"{message} and COLLABADMIN_REQUIRE_POSTGRES=1")
    pytest.skip(message)


class Cluster:
    def __init__(self, bin_dir: Path, root: Path, port: int | None = None) -> None:
        self.bin_dir = bin_dir
        self.root = root
        self.data = root / "data"
        self.log = root / "postgres.log"
        # A port is given when another process made the cluster (tests/faults/own_postgres.py).
        self.port = port or free_port()
        self.as_postgres = os.geteuid() == 0

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/collab"

    def _run(self, *argv: str, timeout: float = 60) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self.as_postgres else []
        result = subprocess.run(
            [*prefix, *argv], capture_output=True, text=True, timeout=timeout, check=False, cwd=self.root
        )
        if result.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {result.stdout}\n{result.stderr}\n{self.log_tail()}")

    def init(self) -> None:
        if self.as_postgres:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self._run(str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def _pg_ctl(self, action: str, *extra: str) -> None:
        # The server's output goes to its log file, never to our pipes (it outlives pg_ctl).
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off -c max_connections=200"
        pg_ctl = str(self.bin_dir / "pg_ctl")
        self._run(pg_ctl, "-D", str(self.data), "-l", str(self.log), "-o", options, *extra, "-w", action)

    def start(self) -> None:
        self._pg_ctl("start")

    def stop(self, mode: str = "fast") -> None:
        """A fast shutdown, as ``pg_ctlcluster ... stop``: sessions are ended, nothing is lost.
        ``immediate`` is a crash of the server: it recovers from its WAL when started."""
        self._pg_ctl("stop", "-m", mode)

    def restart(self) -> None:
        self._pg_ctl("restart", "-m", "fast")

    def create_database(self, name: str = "collab") -> None:
        self._run(str(self.bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)

    def describe(self) -> str:
        """The cluster as one environment value, for a process that may stop and start it."""
        return json.dumps({"bin_dir": str(self.bin_dir), "root": str(self.root), "port": self.port})

    @classmethod
    def described(cls, value: str) -> Cluster:
        fields = json.loads(value)
        return cls(Path(fields["bin_dir"]), Path(fields["root"]), int(fields["port"]))

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


@contextlib.contextmanager
def throwaway_cluster() -> Iterator[Cluster]:
    """A running cluster with an empty database ``collab``; stopped and deleted afterwards."""
    bin_dir = postgres_bin()
    root = Path(tempfile.mkdtemp(prefix="collab-pg-"))
    cluster = Cluster(bin_dir, root)
    try:
        cluster.init()
        cluster.start()
        cluster.create_database()
        yield cluster
    finally:
        with contextlib.suppress(Exception):
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
