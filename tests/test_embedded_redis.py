"""The embedded Redis: started once, shared, reused, stoppable."""

from __future__ import annotations

import concurrent.futures
import subprocess

import pytest

from collabadmin import embedded_redis
from tests.processes import run_python


@pytest.fixture
def var_dir(tmp_path):
    yield tmp_path
    embedded_redis.stop(tmp_path)


def server_pid(var_dir) -> int:
    return int((var_dir / "redis.pid").read_text())


def test_processes_starting_at_once_share_one_server(var_dir):
    code = "from django.conf import settings; print(settings.REDIS_URL)"
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(lambda _: run_python(code, DEBUG="1", REDIS_URL=None, COLLABADMIN_VAR_DIR=str(var_dir)), range(4))
        )

    assert all(result.returncode == 0 for result in results), [r.stderr for r in results]
    assert {result.stdout.strip() for result in results} == {f"unix://{var_dir / 'redis.sock'}"}
    assert (
        len(subprocess.run(["pgrep", "-f", f"{var_dir}/redis.sock"], capture_output=True, text=True).stdout.split())
        == 1
    )


def test_a_running_server_is_reused_not_restarted(var_dir):
    embedded_redis.ensure_running(var_dir)
    first = server_pid(var_dir)

    embedded_redis.ensure_running(var_dir)

    assert server_pid(var_dir) == first


def test_a_stopped_server_is_started_again_on_demand(var_dir):
    sock = embedded_redis.ensure_running(var_dir)
    assert embedded_redis.stop(var_dir) is True
    assert not embedded_redis.answers(sock)

    embedded_redis.ensure_running(var_dir)

    assert embedded_redis.answers(sock)


def test_the_management_command_reports_and_stops_it(var_dir):
    env = {"DEBUG": "1", "REDIS_URL": None, "COLLABADMIN_VAR_DIR": str(var_dir)}
    code = "from django.core.management import call_command; call_command('embedded_redis', '{}')"

    assert "running" in run_python(code.format("status"), **env).stdout
    assert "stopped" in run_python(code.format("stop"), **env).stdout
    assert not embedded_redis.answers(var_dir / "redis.sock")


def test_a_socket_path_too_long_for_unix_sockets_is_refused_with_advice(tmp_path):
    deep = tmp_path / ("x" * 120)

    with pytest.raises(embedded_redis.EmbeddedRedisError, match="COLLABADMIN_VAR_DIR"):
        embedded_redis.ensure_running(deep)
