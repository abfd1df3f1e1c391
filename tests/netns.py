"""A network namespace of a test's own, joined to this machine by a veth pair on a private
/30, with nftables rules inside it to fault the path (issue 16, point 7).

Nothing but the namespace, its veth pair and the processes started in it is touched; the
finalizer removes all three, whatever the test did. Needs root, iproute2's ``ip`` and
``nft``: without them the tests are skipped, unless ``COLLABADMIN_REQUIRE_NETNS=1`` (CI
sets it), which makes their absence a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from itertools import count

import pytest

_serial = count()
# The nftables table the faults go into (inside the namespace only).
TABLE = "collab_fault"


def _require(reason: str) -> None:
    if os.environ.get("COLLABADMIN_REQUIRE_NETNS") == "1":
        pytest.fail(f"{reason} and COLLABADMIN_REQUIRE_NETNS=1")
    pytest.skip(reason)


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


class Namespace:
    """``name`` with ``address`` inside; this machine reaches it from ``host_address``."""

    def __init__(self) -> None:
        serial = next(_serial)
        pid = os.getpid()
        # Names unique to this test process (interface names: at most 15 characters), and
        # a /30 of 10.233.0.0/16 from the pid, so parallel test runs do not collide.
        self.name = f"collab-{pid}-{serial}"
        self.host_veth, self.inner_veth = f"cv{pid % 100000}h{serial}", f"cv{pid % 100000}n{serial}"
        block = (pid * 8 + serial) % 16384
        base = f"10.233.{block // 64}.{(block % 64) * 4}"
        prefix = base.rsplit(".", 1)[0]
        last = int(base.rsplit(".", 1)[1])
        self.host_address, self.address = f"{prefix}.{last + 1}", f"{prefix}.{last + 2}"

    def create(self) -> None:
        _run("ip", "netns", "add", self.name)
        _run("ip", "link", "add", self.host_veth, "type", "veth", "peer", "name", self.inner_veth)
        _run("ip", "link", "set", self.inner_veth, "netns", self.name)
        _run("ip", "addr", "add", f"{self.host_address}/30", "dev", self.host_veth)
        _run("ip", "link", "set", self.host_veth, "up")
        self.exec("ip", "addr", "add", f"{self.address}/30", "dev", self.inner_veth)
        self.exec("ip", "link", "set", self.inner_veth, "up")
        self.exec("ip", "link", "set", "lo", "up")
        self.nft(f"add table inet {TABLE}")
        for hook in ("input", "output"):
            self.nft(f"add chain inet {TABLE} {hook} {{ type filter hook {hook} priority 0 ; policy accept ; }}")

    def exec(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return _run("ip", "netns", "exec", self.name, *argv)

    def launcher(self) -> list[str]:
        """Prefix for ``start_peer(launcher=...)``: the simulator runs inside the namespace
        (``ip netns exec`` execs it, so the process is the simulator itself)."""
        return ["ip", "netns", "exec", self.name, sys.executable, "-m", "failover.peering"]

    def nft(self, command: str) -> None:
        self.exec("nft", command)

    def lose(self, percent: int) -> None:
        """Drop ``percent`` % of the packets at random, both ways, on the veth."""
        for hook, way in (("input", "iifname"), ("output", "oifname")):
            self.nft(
                f'add rule inet {TABLE} {hook} {way} "{self.inner_veth}" numgen random mod 100 < {percent} counter drop'
            )

    def cut(self) -> None:
        """Drop every packet both ways on the veth: a partition."""
        for hook, way in (("input", "iifname"), ("output", "oifname")):
            self.nft(f'add rule inet {TABLE} {hook} {way} "{self.inner_veth}" counter drop')

    def heal(self) -> None:
        for hook in ("input", "output"):
            self.nft(f"flush chain inet {TABLE} {hook}")

    def dropped(self) -> int:
        """Packets the fault rules dropped so far."""
        listing = self.exec("nft", "list", "table", "inet", TABLE).stdout
        return sum(int(word) for line in listing.splitlines() if "counter" in line for word in _after(line, "packets"))

    def destroy(self) -> None:
        pids = _run("ip", "netns", "pids", self.name, check=False).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGCONT)
                os.kill(int(pid), signal.SIGKILL)
        _run("ip", "link", "del", self.host_veth, check=False)
        _run("ip", "netns", "del", self.name, check=False)


def _after(line: str, word: str) -> list[str]:
    words = line.split()
    return [words[i + 1] for i, w in enumerate(words[:-1]) if w == word]


@pytest.fixture
def namespace() -> Iterator[Namespace]:
    """A fresh network namespace with a veth pair to this machine and an empty nftables
    table inside; removed at teardown, with every process still running in it."""
    if os.geteuid() != 0:
        _require("network namespaces need root")
    if not shutil.which("ip") or not shutil.which("nft"):
        _require("iproute2's ip and nftables' nft are needed (apt-get install -y iproute2 nftables)")
    ns = Namespace()
    try:
        ns.create()
    except RuntimeError as exc:
        ns.destroy()
        _require(f"no network namespace support here: {exc}")
    try:
        yield ns
    finally:
        ns.destroy()
