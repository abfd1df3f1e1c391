"""Run the fault suite on a PostgreSQL cluster of its own, which it may restart.

The machine's PostgreSQL is shared and never restarted. This wrapper starts a throwaway
cluster (tests/postgres_cluster.py: Debian's ``initdb`` and ``pg_ctl``, a free port,
loopback only), points ``DATABASE_URL`` at it and describes it in ``FAULTS_OWN_POSTGRES``,
then runs ``bin/test`` with the given arguments (by default the fault suite). The suite
adds the ``restart_database`` fault only when its database is on that cluster. The
cluster is stopped and deleted afterwards, whatever the result.

    .venv/bin/python -m tests.faults.own_postgres                       # bin/test -m faults
    FAULTS_RUNS=50 .venv/bin/python -m tests.faults.own_postgres -m faults
    FAULTS_SEED=1234 .venv/bin/python -m tests.faults.own_postgres -m faults
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.postgres_cluster import throwaway_cluster
from tests.processes import ROOT

ENV = "FAULTS_OWN_POSTGRES"


def main(argv: list[str]) -> int:
    try:
        with throwaway_cluster() as cluster:
            print(f"fault suite on a PostgreSQL cluster of its own: {cluster.url} ({cluster.root})", flush=True)
            env = {**os.environ, "DATABASE_URL": cluster.url, ENV: cluster.describe()}
            command = [str(ROOT / "bin" / "test"), *(argv or ["-m", "faults"])]
            return subprocess.run(command, env=env, cwd=ROOT, check=False).returncode
    except (pytest.skip.Exception, pytest.fail.Exception) as missing:
        # Asked for explicitly: no PostgreSQL binaries is a failure here, never a skip.
        print(f"cannot start a PostgreSQL cluster: {missing}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
