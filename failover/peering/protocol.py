"""Wire format shared by the client adapter and the simulators.

Newline-delimited JSON over TCP: one UTF-8 JSON object per line, at most
``MAX_FRAME_BYTES`` bytes per line (newline excluded). Three kinds of message:

* request  ``{"id": 7, "op": "route", "session_id": "s1", "skill_group": "sales"}``
* response ``{"id": 7, "ok": true, ...result}`` or
  ``{"id": 7, "ok": false, "error": {"code": "no_agent_available", "message": "..."}}``
* event    ``{"event": "route_confirmed", ...fields}`` (pushed by a peer, no ``id``)

See ``docs/peer-protocol.md`` for every operation.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any, Final

PROTOCOL_VERSION: Final = 1

# A whole ICM configuration (get_config) travels in one line, so the limit is sized for a
# few thousand agents rather than for requests, which are tiny.
MAX_FRAME_BYTES: Final = 1024 * 1024
# The shape of every id on the wire (agents, skill groups, sessions): docs/peer-protocol.md.
ID_PATTERN: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}$")

# Error codes used on the wire. Peers may add their own (e.g. no_agent_available).
BAD_REQUEST: Final = "bad_request"
FRAME_TOO_LARGE: Final = "frame_too_large"
UNKNOWN_OP: Final = "unknown_op"
INVALID: Final = "invalid"
NOT_FOUND: Final = "not_found"
CONFLICT: Final = "conflict"
UNSUPPORTED_VERSION: Final = "unsupported_version"
INTERNAL: Final = "internal"

Message = dict[str, Any]


class ProtocolError(Exception):
    """A line that is not a valid message; carries the wire error code and, if known, the id."""

    def __init__(self, code: str, message: str, request_id: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


class FrameTooLarge(ProtocolError):
    """A line longer than the frame limit (already discarded from the stream when raised)."""

    def __init__(self, limit: int = MAX_FRAME_BYTES) -> None:
        super().__init__(FRAME_TOO_LARGE, f"line longer than {limit} bytes")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def encode(message: Message, *, limit: int = MAX_FRAME_BYTES) -> bytes:
    """Serialise one message to a frame (compact JSON + ``\\n``).

    Raises ``FrameTooLarge`` if the frame would exceed ``limit`` and ``ValueError`` for
    values JSON cannot carry (NaN, infinities, non-JSON types).
    """
    data = json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    frame = data.encode("utf-8")
    if len(frame) > limit:
        raise FrameTooLarge(limit)
    return frame + b"\n"


def decode(line: bytes) -> Message:
    """Parse one frame (without or with its trailing newline) into a JSON object.

    Raises ``ProtocolError(bad_request)`` for invalid UTF-8, invalid JSON, non-standard
    constants (NaN) or anything but an object at the top level.
    """
    try:
        text = line.decode("utf-8")
        value = json.loads(text, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(BAD_REQUEST, f"malformed JSON: {exc}") from None
    except RecursionError:
        # A line of 100k "[" is valid-looking input that blows the decoder's stack.
        raise ProtocolError(BAD_REQUEST, "malformed JSON: nested too deeply") from None
    if not isinstance(value, dict):
        raise ProtocolError(BAD_REQUEST, "a message must be a JSON object")
    return value


async def read_frame(reader: asyncio.StreamReader, *, limit: int = MAX_FRAME_BYTES) -> bytes | None:
    """Read one line (newline stripped) or return ``None`` at end of stream.

    The reader must have been created with ``limit=limit`` (``open_connection`` /
    ``start_server`` argument), which is what bounds memory. An oversize line is consumed
    up to and including its newline, then ``FrameTooLarge`` is raised, so the stream stays
    usable for the next message. A trailing line without newline before EOF is dropped
    (the sender died mid-write). Transport errors propagate as ``ConnectionError``.
    """
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError:
        return None
    except asyncio.LimitOverrunError as exc:
        if not await _discard_line(reader, exc.consumed):
            return None
        raise FrameTooLarge(limit) from None
    return line[:-1]


async def _discard_line(reader: asyncio.StreamReader, consumed: int) -> bool:
    """Drop bytes through the next newline; False if the stream ended first."""
    while True:
        try:
            await reader.readexactly(consumed)
            await reader.readuntil(b"\n")
            return True
        except asyncio.IncompleteReadError:
            return False
        except asyncio.LimitOverrunError as exc:
            consumed = exc.consumed


def parse_request(message: Message) -> tuple[int, str, dict[str, Any]]:
    """Split a request into ``(id, op, args)``.

    Raises ``ProtocolError(bad_request)`` (with the id when it was usable) if ``id`` is not
    a non-negative integer or ``op`` not a non-empty string.
    """
    request_id = message.get("id")
    if not _is_id(request_id):
        raise ProtocolError(BAD_REQUEST, "'id' must be a non-negative integer")
    op = message.get("op")
    if not isinstance(op, str) or not op:
        raise ProtocolError(BAD_REQUEST, "'op' must be a non-empty string", request_id)
    args = {key: value for key, value in message.items() if key not in ("id", "op")}
    return request_id, op, args


def _is_id(value: object) -> bool:
    # bool is an int subclass; True is not an id.
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def request(request_id: int, op: str, **args: Any) -> Message:
    """Build a request; ``id`` and ``op`` are reserved and cannot be argument names."""
    return {"id": request_id, "op": op, **args}


def ok_response(request_id: int, **result: Any) -> Message:
    """Build a success response; ``id`` and ``ok`` are reserved result keys."""
    return {"id": request_id, "ok": True, **result}


def error_response(request_id: int | None, code: str, message: str) -> Message:
    """Build an error response. ``request_id`` is ``None`` when the request had no usable id."""
    return {"id": request_id, "ok": False, "error": {"code": code, "message": message}}


def event(name: str, **fields: Any) -> Message:
    """Build an unsolicited event; ``event`` is a reserved field name."""
    return {"event": name, **fields}


def is_event(message: Message) -> bool:
    """True for an event (has ``event``, no ``id``)."""
    return "event" in message and "id" not in message


def is_response(message: Message) -> bool:
    """True for a response to a request (has ``id`` and boolean ``ok``)."""
    return "id" in message and isinstance(message.get("ok"), bool)


def result_of(message: Message) -> dict[str, Any]:
    """The result fields of a success response (everything except ``id`` and ``ok``)."""
    return {key: value for key, value in message.items() if key not in ("id", "ok")}
