"""``ctl``: drive a running simulator from the command line (faults, hangups, ICM side,
changes made in the ICM outside collabadmin, any op).

    python -m failover.peering ctl --port 7001 fault latency 200
    python -m failover.peering ctl --port 7001 fault stall|refuse|clear|show
    python -m failover.peering ctl --port 7001 hangup SESSION_ID
    python -m failover.peering ctl --port 7001 set-icm-side A|B|none
    python -m failover.peering ctl --port 7003 icm-add-agent AGENT_ID [--name NAME] [--skill-group ID ...] [--disabled]
    python -m failover.peering ctl --port 7003 icm-delete-agent AGENT_ID
    python -m failover.peering ctl --port 7001 call register_agent agent_id=a1 'skill_groups=["sales"]'

``icm-add-agent`` and ``icm-delete-agent`` (also spelt ``icm_add_agent``,
``icm_delete_agent``) stand for someone changing the ICM with its own tools: the change
goes through the AW on ``--port`` into the ICM that AW fronts (with ``--icm-store``, the
one both AWs of the pair serve), and collabadmin knows nothing of it until a verify.

With ``--control-port C`` the request goes to the process's control port, addressed to the
peer on ``--port`` and unaffected by its faults: the only way to clear ``refuse`` (the
peer's own port no longer accepts connections). Prints the JSON reply; exit status 0 on
success, 1 if the peer answered an error, 2 if it could not be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from .client import PeerError, PeerUnavailable, call_once

EXIT_OK, EXIT_PEER_ERROR, EXIT_UNAVAILABLE = 0, 1, 2


async def control_call(
    host: str, port: int, op: str, *, control_port: int | None = None, timeout: float = 5.0, **args: Any
) -> dict[str, Any]:
    """Send ``op`` to the peer on ``port``, through ``control_port`` if given (faults bypassed).

    Raises ``PeerError`` / ``PeerUnavailable`` like ``client.PeerConnection.call``.
    """
    if control_port is not None:
        return await call_once(host, control_port, op, timeout=timeout, hello=False, peer=port, **args)
    return await call_once(host, port, op, timeout=timeout, hello=False, **args)


def _fault_args(words: list[str]) -> dict[str, Any]:
    match words:
        case ["latency", ms] if ms.isdigit():
            return {"latency_ms": int(ms)}
        case ["stall"]:
            return {"stall": True}
        case ["refuse"]:
            return {"refuse": True}
        case ["clear"]:
            return {"clear": True}
        case ["show"] | []:
            return {}
    raise argparse.ArgumentTypeError("fault takes: latency MS | stall | refuse | clear | show")


def _parse_assignment(text: str) -> tuple[str, Any]:
    """``key=value``; the value is JSON if it parses as JSON, else the plain string."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        return key, json.loads(raw)
    except ValueError:
        return key, raw


def add_ctl_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ctl options and sub-commands to ``parser`` (shared with ``manage.py peerctl``)."""
    parser.add_argument("--host", default="127.0.0.1", help="simulator host (default 127.0.0.1)")
    parser.add_argument("--port", type=int, required=True, help="the peer's port")
    parser.add_argument("--control-port", type=int, default=None, help="the process's control port (bypasses faults)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the reply")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    fault = sub.add_parser("fault", help="latency MS | stall | refuse | clear | show")
    fault.add_argument("words", nargs="*", metavar="FAULT")
    hangup = sub.add_parser("hangup", help="the caller of SESSION_ID hangs up (Media Blender)")
    hangup.add_argument("session_id")
    side = sub.add_parser("set-icm-side", help="the Media Blender's ICM side: A, B or none")
    side.add_argument("side", choices=["A", "B", "none"])
    _add_icm_arguments(sub)
    call = sub.add_parser("call", help="any operation: OP [key=json-or-text ...]")
    call.add_argument("op")
    call.add_argument("assignments", nargs="*", metavar="KEY=VALUE")


def _add_icm_arguments(sub: Any) -> None:
    """The changes made in the ICM outside collabadmin (Admin Workstation)."""
    add = sub.add_parser(
        "icm-add-agent",
        aliases=["icm_add_agent"],
        help="create agent AGENT_ID in the ICM, outside collabadmin (Admin Workstation)",
    )
    add.add_argument("agent_id")
    add.add_argument("--name", help="the agent's name (default: AGENT_ID)")
    add.add_argument(
        "--skill-group", dest="skill_groups", action="append", default=[], metavar="ID", help="repeat for several"
    )
    add.add_argument("--disabled", action="store_true", help="create the agent disabled")
    delete = sub.add_parser(
        "icm-delete-agent",
        aliases=["icm_delete_agent"],
        help="delete agent AGENT_ID from the ICM, outside collabadmin (Admin Workstation)",
    )
    delete.add_argument("agent_id")


def _icm_request(ns: argparse.Namespace) -> tuple[str, dict[str, Any]] | None:
    action = ns.action.replace("_", "-")
    if action == "icm-add-agent":
        args = {"agent_id": ns.agent_id, "name": ns.name or ns.agent_id, "skill_groups": ns.skill_groups}
        return "create_agent", {**args, "enabled": not ns.disabled}
    if action == "icm-delete-agent":
        return "delete_agent", {"agent_id": ns.agent_id}
    return None


def request_from(ns: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The (op, args) a parsed ctl command line stands for; ``ArgumentTypeError`` if malformed."""
    if (icm := _icm_request(ns)) is not None:
        return icm
    if ns.action == "fault":
        return "fault", _fault_args(ns.words)
    if ns.action == "hangup":
        return "hangup", {"session_id": ns.session_id}
    if ns.action == "set-icm-side":
        return "set_icm_side", {"side": ns.side}
    return ns.op, dict(_parse_assignment(a) for a in ns.assignments)


def run_ctl(ns: argparse.Namespace, *, out: Any = None, err: Any = None) -> int:
    """Execute a parsed ctl command; write the reply (JSON) to ``out`` or the error to ``err``;
    return the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        op, args = request_from(ns)
    except argparse.ArgumentTypeError as exc:
        err.write(f"error: {exc}\n")
        return EXIT_PEER_ERROR
    try:
        result = asyncio.run(
            control_call(ns.host, ns.port, op, control_port=ns.control_port, timeout=ns.timeout, **args)
        )
    except PeerError as exc:
        err.write(f"error: {exc.code}: {exc.message}\n")
        return EXIT_PEER_ERROR
    except PeerUnavailable as exc:
        err.write(f"unavailable: {exc}\n")
        return EXIT_UNAVAILABLE
    # write(), not print(): Django's OutputWrapper adds its own newline to unterminated text.
    out.write(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return EXIT_OK
