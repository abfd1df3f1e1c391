"""Run a peer simulator, or drive one, without Django.

    python -m failover.peering media-blender --port 7001 [--name mb-a]
    python -m failover.peering admin-workstation --port 7101 [--name aw-a] [--data var/aw-a.json]
    python -m failover.peering admin-workstation --port 7102 --name aw-b --icm-store var/icm.json  # a pair's one ICM
    python -m failover.peering media-blender --ports 7000-7999 --control-port 6999   # 1000 peers
    python -m failover.peering ctl --port 7001 fault latency 200

Once every port listens, prints exactly one line to stdout and flushes it::

    ready kind=media-blender name=mb-a port=7001 ports=7001 count=1 control_port=none

(``--port 0`` binds a free port: read it from that line). Logs go to stderr. SIGTERM and
SIGINT stop the process cleanly with status 0; a port that cannot be bound or a bad data
file exits with status 1 and a message on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import resource
import sys
from collections.abc import Sequence

from .admin_workstation import AdminWorkstation
from .control import add_ctl_arguments, run_ctl
from .icm_store import DataFileError
from .media_blender_simulator import DEFAULT_CONFIRM_DELAY_MS, MediaBlender
from .simulator import ControlServer, PeerSimulator, serve

KINDS: dict[str, type[PeerSimulator]] = {
    MediaBlender.kind: MediaBlender,
    AdminWorkstation.kind: AdminWorkstation,
}
SHORT_NAMES = {MediaBlender.kind: "mb", AdminWorkstation.kind: "aw"}
MAX_PEERS = 10_000


def _port_range(text: str) -> list[int]:
    first, sep, last = text.partition("-")
    try:
        ports = list(range(int(first), int(last if sep else first) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected A-B, got {text!r}") from None
    if not ports or not all(1 <= p <= 65535 for p in ports) or len(ports) > MAX_PEERS:
        raise argparse.ArgumentTypeError(f"bad port range {text!r} (1-65535, at most {MAX_PEERS} ports)")
    return ports


def add_run_arguments(parser: argparse.ArgumentParser, *, with_kind: bool = True) -> None:
    """Add the simulator options to ``parser`` (shared with ``manage.py runpeer``)."""
    if with_kind:
        parser.add_argument("kind", choices=sorted(KINDS), help="which peer to simulate")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", type=int, help="port to listen on (0: a free port, printed in the ready line)")
    where.add_argument("--ports", type=_port_range, help="serve one independent peer on each port of A-B")
    parser.add_argument(
        "--count", type=int, default=1, help="with --port P: serve COUNT peers on P, P+1, ... (--port 0: free ports)"
    )
    parser.add_argument(
        "--name", help="peer name, may contain {port}; several peers are named NAME-PORT; default mb-PORT / aw-PORT"
    )
    store = parser.add_mutually_exclusive_group()
    store.add_argument(
        "--data", help="admin-workstation: its own data file (JSON); may contain {port}; default: in memory only"
    )
    store.add_argument(
        "--icm-store",
        metavar="PATH",
        help="admin-workstation: the ICM database (JSON, changed under a file lock) shared by every AW "
        "given the same PATH, as both AWs of a pair front one ICM",
    )
    parser.add_argument(
        "--control-port", type=int, default=None, help="also listen on this control port (0: a free port)"
    )
    parser.add_argument(
        "--confirm-delay-ms",
        type=int,
        default=DEFAULT_CONFIRM_DELAY_MS,
        help=f"media-blender: delay before route_confirmed (default {DEFAULT_CONFIRM_DELAY_MS})",
    )
    parser.add_argument(
        "--icm-side", choices=["A", "B", "none"], default="A", help="media-blender: initial ICM side (default A)"
    )
    parser.add_argument(
        "--no-heartbeat",
        action="store_true",
        help="act as a peer from before heartbeats: no subscribe_heartbeat (the monitor probes it instead)",
    )
    parser.add_argument("--log-level", default="WARNING", help="stderr log level (default WARNING)")


def build_peers(ns: argparse.Namespace) -> list[PeerSimulator]:
    """The simulators a parsed command line asks for (not started). ``ValueError`` if inconsistent."""
    if ns.ports is not None:
        ports = ns.ports
    elif ns.count < 1 or ns.count > MAX_PEERS:
        raise ValueError(f"--count must be 1 to {MAX_PEERS}")
    elif ns.port == 0:
        ports = [0] * ns.count
    else:
        ports = list(range(ns.port, ns.port + ns.count))
    if ns.data and len(ports) > 1 and "{port}" not in ns.data:
        raise ValueError("with several peers --data must contain {port} (one file per peer)")
    icm_store = ns.icm_store
    if (ns.data or icm_store) and ns.kind != AdminWorkstation.kind:
        raise ValueError("--data and --icm-store are for admin-workstation only")
    if icm_store and "{port}" in icm_store:
        raise ValueError("--icm-store is one ICM shared by every peer given it: for one file per peer use --data")
    peers: list[PeerSimulator] = []
    short = SHORT_NAMES[ns.kind]
    if ns.name:
        name = ns.name if len(ports) == 1 or "{port}" in ns.name else ns.name + "-{port}"
    else:
        name = short + "-{port}"
    for port in ports:
        if ns.kind == MediaBlender.kind:
            icm_side = None if ns.icm_side == "none" else ns.icm_side
            peer: PeerSimulator = MediaBlender(
                name=name, host=ns.host, port=port, confirm_delay_ms=ns.confirm_delay_ms, icm_side=icm_side
            )
        else:
            peer = AdminWorkstation(name=name, host=ns.host, port=port, data_file=ns.data, icm_store=icm_store)
        peer.offers_heartbeat = not ns.no_heartbeat
        peers.append(peer)
    return peers


def _ready_line(peers: Sequence[PeerSimulator], control: ControlServer | None, name: str) -> str:
    ports = [p.port for p in peers]
    contiguous = ports == list(range(ports[0], ports[0] + len(ports)))
    port_list = f"{ports[0]}-{ports[-1]}" if contiguous and len(ports) > 1 else ",".join(map(str, ports))
    names = peers[0].name if len(peers) == 1 else name.replace("{port}", "PORT")
    control_port = control.port if control else "none"
    return (
        f"ready kind={peers[0].kind} name={names} port={ports[0]} ports={port_list} "
        f"count={len(peers)} control_port={control_port}"
    )


def _raise_fd_limit(wanted: int) -> None:
    # Every simulated peer is a listening socket plus its clients: 1000 peers exceed the
    # usual soft limit of 1024 descriptors.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def run(ns: argparse.Namespace) -> int:
    """Run the simulators a parsed command line describes until SIGTERM/SIGINT; exit status."""
    logging.basicConfig(
        level=str(ns.log_level).upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        peers = build_peers(ns)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _raise_fd_limit(len(peers) * 4 + 64)

    def on_ready(started: Sequence[PeerSimulator], control: ControlServer | None) -> None:
        print(_ready_line(started, control, started[0].name_template), flush=True)

    try:
        asyncio.run(serve(peers, control_port=ns.control_port, control_host=ns.host, on_ready=on_ready))
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except DataFileError as exc:
        print(f"error: {exc}; refusing to start", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # SIGINT before the handler was installed
        pass
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m failover.peering", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for kind in sorted(KINDS):
        add_run_arguments(sub.add_parser(kind, help=f"run a {kind} simulator"), with_kind=False)
    add_ctl_arguments(sub.add_parser("ctl", help="drive a running simulator (faults, hangup, any op)"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    if ns.command == "ctl":
        return run_ctl(ns)
    ns.kind = ns.command
    return run(ns)


if __name__ == "__main__":
    sys.exit(main())
