"""The peer adapter: the only module the rest of the server uses to talk to a peer.

A real Media Blender / ICM integration replaces this module (keeping these names and
contracts), not the callers. Everything here is asyncio; ``call_sync`` and ``probe_sync``
wrap it for synchronous code (Django views, Celery tasks) that has no running event loop.

Failure contract, relied on by health checks and switchovers:

* ``PeerError``: the peer answered and said no (``.code`` is the wire error code).
  The peer is healthy; retrying the same request gets the same answer.
* ``PeerUnavailable``: no answer (refused, reset, closed, timed out, unreachable, or it
  broke the protocol). ``.reason`` says which. The request may or may not have been
  executed by the peer: only retry operations that are idempotent (``route`` is, per
  session) or check first.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar, Final, Self

from . import protocol
from .protocol import Message

log = logging.getLogger("failover.peering.client")

DEFAULT_TIMEOUT: Final = 2.0
CLOSE_TIMEOUT: Final = 1.0
CLIENT_NAME: Final = "collabadmin"
# The shape of ids on the wire, for code that checks input before sending it (the rest of
# the product imports only this module of the adapter, docs/peer-protocol.md section 8).
ID_PATTERN: Final = protocol.ID_PATTERN

# PeerUnavailable reasons.
REFUSED: Final = "refused"
TIMEOUT: Final = "timeout"
RESET: Final = "reset"
CLOSED: Final = "closed"
UNREACHABLE: Final = "unreachable"
PROTOCOL: Final = "protocol"

EventCallback = Callable[[Message], None]


class PeerException(Exception):
    """Base of the adapter's exceptions."""


class PeerError(PeerException):
    """The peer refused the request: ``code`` (e.g. ``not_found``) and ``message`` from the wire."""

    def __init__(self, code: str, message: str, *, op: str | None = None) -> None:
        super().__init__(f"{op or 'request'}: {code}: {message}")
        self.code = code
        self.message = message
        self.op = op


class PeerUnavailable(PeerException):
    """No usable answer from the peer; ``reason`` is one of refused, timeout, reset,
    closed, unreachable, protocol."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class PeerInfo:
    """What the peer said about itself in ``hello``."""

    kind: str
    name: str
    protocol: int
    ops: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProbeResult:
    """Outcome of one health probe.

    ``latency_ms`` is the time from starting the probe to the ping reply (or to the
    failure); ``error`` is ``"<reason>: <detail>"`` when ``ok`` is false; ``details`` holds
    the ping reply (kind, name, port, uptime, time) and, for ``probe``, ``connect_ms``.
    """

    ok: bool
    latency_ms: float
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def _unavailable_from(exc: BaseException, host: str, port: int) -> PeerUnavailable:
    where = f"{host}:{port}"
    if isinstance(exc, ConnectionRefusedError):
        return PeerUnavailable(REFUSED, f"connection refused by {where}")
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return PeerUnavailable(RESET, f"connection to {where} reset: {exc}")
    return PeerUnavailable(UNREACHABLE, f"cannot reach {where}: {exc}")


class PeerConnection:
    """A connection held open to one peer, with request multiplexing and pushed events.

    Open with ``await PeerConnection.open(...)``. ``call`` may be used concurrently from
    many tasks. Events go to ``on_event`` (a plain function, called on the event loop: it
    must not block; exceptions are logged and ignored) and/or are put on ``events``
    (dropped with a warning if that queue is full). ``closed`` is set the moment the TCP
    connection ends for any reason (peer died, reset, protocol violation, ``close()``);
    ``close_reason`` then says why, and every pending and later ``call`` raises
    ``PeerUnavailable``.
    """

    def __init__(
        self,
        host: str,
        port: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        on_event: EventCallback | None = None,
        events: asyncio.Queue[Message] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.info: PeerInfo | None = None
        self.closed = asyncio.Event()
        self.close_reason: str | None = None
        self._reader = reader
        self._writer = writer
        self._on_event = on_event
        self._events = events
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Message]] = {}
        self._reader_task = asyncio.create_task(self._read_loop(), name=f"peer-reader-{host}:{port}")

    def __repr__(self) -> str:
        state = f"closed ({self.close_reason})" if self.closed.is_set() else "open"
        return f"<PeerConnection {self.host}:{self.port} {state}>"

    @property
    def calls_in_flight(self) -> int:
        """Requests sent on this connection and still waiting for their reply."""
        return len(self._pending)

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        on_event: EventCallback | None = None,
        events: asyncio.Queue[Message] | None = None,
        expect_kind: str | None = None,
        hello: bool = True,
    ) -> PeerConnection:
        """Connect and say ``hello`` (which subscribes this connection to events), all
        within ``timeout`` seconds.

        Raises ``PeerUnavailable`` if the peer cannot be reached or does not answer,
        ``PeerError`` if it rejects the hello or (``expect_kind``) is another kind of peer,
        e.g. an AW configured where an MB was expected. ``hello=False`` skips the exchange
        (one-shot tools: no events, no kind check).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(host, port, limit=protocol.MAX_FRAME_BYTES)
        except TimeoutError:
            raise PeerUnavailable(TIMEOUT, f"connecting to {host}:{port} took more than {timeout:g} s") from None
        except OSError as exc:
            raise _unavailable_from(exc, host, port) from None
        conn = cls(host, port, reader, writer, on_event=on_event, events=events)
        if not hello:
            return conn
        try:
            reply = await conn.call(
                "hello",
                timeout=max(deadline - loop.time(), 0.001),
                protocol=protocol.PROTOCOL_VERSION,
                client=CLIENT_NAME,
            )
            conn.info = PeerInfo(
                kind=str(reply.get("kind")),
                name=str(reply.get("name")),
                protocol=int(reply.get("protocol", 0)),
                ops=tuple(reply.get("ops", ())),
            )
            if expect_kind is not None and conn.info.kind != expect_kind:
                raise PeerError("wrong_kind", f"{host}:{port} is a {conn.info.kind}, not a {expect_kind}", op="hello")
        except BaseException:
            await conn.close()
            raise
        return conn

    async def __aenter__(self) -> PeerConnection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def call(self, op: str, *, timeout: float = DEFAULT_TIMEOUT, **args: Any) -> dict[str, Any]:
        """Send request ``op`` with ``args`` and return the result fields of the reply.

        ``id``, ``op`` and ``timeout`` cannot be argument names. Raises ``PeerError`` if the
        peer answered an error, ``PeerUnavailable`` if there is no answer within
        ``timeout`` seconds (reason ``timeout``; the connection stays open and a late reply
        is discarded) or the connection is or becomes closed.
        """
        if self.closed.is_set():
            raise PeerUnavailable(CLOSED, f"connection to {self.host}:{self.port} is closed ({self.close_reason})")
        request_id = next(self._ids)
        try:
            frame = protocol.encode(protocol.request(request_id, op, **args))
        except (protocol.FrameTooLarge, ValueError, TypeError) as exc:
            raise PeerError(protocol.INVALID, f"cannot encode request: {exc}", op=op) from None
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            async with asyncio.timeout(timeout):
                self._writer.write(frame)
                await self._writer.drain()
                reply = await future
        except TimeoutError:
            raise PeerUnavailable(TIMEOUT, f"{op} to {self.host}:{self.port}: no reply within {timeout:g} s") from None
        except OSError as exc:
            raise _unavailable_from(exc, self.host, self.port) from None
        finally:
            self._pending.pop(request_id, None)
            if not future.done():
                future.cancel()
            elif not future.cancelled():
                future.exception()  # mark it seen: a write that failed first raised already
        if reply.get("ok"):
            return protocol.result_of(reply)
        error = reply.get("error") if isinstance(reply.get("error"), dict) else {}
        raise PeerError(str(error.get("code", "unknown")), str(error.get("message", "")), op=op)

    async def probe(self, *, timeout: float = DEFAULT_TIMEOUT) -> ProbeResult:
        """Ping over this open connection (no connect cost); never raises."""
        start = time.perf_counter()
        try:
            details = await self.call("ping", timeout=timeout)
        except PeerException as exc:
            return ProbeResult(False, _ms_since(start), str(exc))
        return ProbeResult(True, _ms_since(start), None, details)

    def abort(self, reason: str) -> None:
        """Drop the connection at once (a reset, no waiting for a peer that may never read
        again); pending calls fail with ``PeerUnavailable(closed)``."""
        self._shutdown(reason)
        self._reader_task.cancel()
        self._writer.transport.abort()

    async def close(self) -> None:
        """Close the connection (idempotent); pending calls fail with ``PeerUnavailable(closed)``."""
        self._shutdown("closed by client")
        self._reader_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await self._reader_task
        try:
            # Bounded: a stopped peer that no longer reads could hold a graceful close forever.
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self._writer.wait_closed()
        except (TimeoutError, OSError):
            self._writer.transport.abort()

    def _shutdown(self, reason: str) -> None:
        if self.closed.is_set():
            return
        self.close_reason = reason
        self._writer.close()
        error = PeerUnavailable(CLOSED, f"connection to {self.host}:{self.port} {reason}")
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self.closed.set()

    async def _read_loop(self) -> None:
        reason = "closed by peer"
        try:
            while True:
                line = await protocol.read_frame(self._reader)
                if line is None:
                    break
                message = protocol.decode(line)
                if protocol.is_response(message):
                    future = self._pending.get(message["id"])
                    # No future: a reply that arrived after its call timed out.
                    if future is not None and not future.done():
                        future.set_result(message)
                elif protocol.is_event(message):
                    self._deliver(message)
                else:
                    log.warning("%r: ignoring message that is neither reply nor event: %.200s", self, line)
        except protocol.ProtocolError as exc:
            # A peer that sends garbage cannot be trusted to match replies any more.
            reason = f"protocol violation: {exc.message}"
        except OSError as exc:
            reason = f"reset ({exc})"
        finally:
            self._shutdown(reason)

    def _deliver(self, message: Message) -> None:
        if self._on_event is not None:
            try:
                self._on_event(message)
            except Exception:
                log.exception("%r: event callback failed on %s", self, message.get("event"))
        if self._events is not None:
            try:
                self._events.put_nowait(message)
            except asyncio.QueueFull:
                log.warning("%r: event queue full, dropping %s", self, message.get("event"))


def _ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)


async def probe(host: str, port: int, timeout: float = DEFAULT_TIMEOUT) -> ProbeResult:
    """One-shot health probe: connect, ``ping``, close; the whole within ``timeout`` seconds.

    Never raises for peer problems: a refused port gives ``error`` starting ``refused:``,
    a peer that accepts but does not answer (stopped, stalled) ``timeout:``.
    """
    loop = asyncio.get_running_loop()
    start = time.perf_counter()
    deadline = loop.time() + timeout
    try:
        conn = await PeerConnection.open(host, port, timeout=timeout, hello=False)
    except PeerException as exc:
        return ProbeResult(False, _ms_since(start), str(exc))
    connect_ms = _ms_since(start)
    try:
        result = await conn.probe(timeout=max(deadline - loop.time(), 0.001))
    finally:
        await conn.close()
    latency = _ms_since(start)
    return ProbeResult(result.ok, latency, result.error, {**result.details, "connect_ms": connect_ms})


async def call_once(
    host: str, port: int, op: str, *, timeout: float = DEFAULT_TIMEOUT, hello: bool = True, **args: Any
) -> dict[str, Any]:
    """Open a connection, make one call, close it; ``timeout`` applies to each step."""
    async with await PeerConnection.open(host, port, timeout=timeout, hello=hello) as conn:
        return await conn.call(op, timeout=timeout, **args)


class SyncPeerConnection:
    """One held connection to a peer for a series of requests from synchronous code
    (Celery tasks, services run by ``sync_to_async``). Subclasses set ``expect_kind``.

    Use as a context manager. The connection lives on a private event loop that runs only
    during a request, so database work between requests happens with no loop running, as
    Django requires. ``call`` raises ``PeerUnavailable`` when the peer cannot be reached or
    does not answer within ``timeout`` (the request may or may not have been executed) and
    ``PeerError`` for a refusal.
    """

    expect_kind: ClassVar[str]

    def __init__(self, peer: Any, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.peer = peer  # anything with ``host`` and ``port``
        self.timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conn: PeerConnection | None = None

    def __enter__(self) -> Self:
        self._loop = asyncio.new_event_loop()
        try:
            self._conn = self._loop.run_until_complete(
                PeerConnection.open(self.peer.host, self.peer.port, timeout=self.timeout, expect_kind=self.expect_kind)
            )
        except BaseException:
            self._loop.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._loop is not None
        try:
            if self._conn is not None:
                self._loop.run_until_complete(self._conn.close())
        finally:
            self._loop.close()

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        """One request over the held connection; the adapter's exceptions pass through."""
        if self._loop is None or self._conn is None:
            raise RuntimeError(f"use {type(self).__name__} as a context manager")
        return self._loop.run_until_complete(self._conn.call(op, timeout=self.timeout, **args))

    def call_many(self, requests: Sequence[tuple[str, dict[str, Any]]]) -> list[dict[str, Any] | PeerException]:
        """Send every ``(op, args)`` request at once over the held connection (pipelined:
        one round trip's wait for the lot, where ``call`` waits once per request) and
        return each reply's result, or the exception of that request, in request order.

        A peer handles one connection's requests in the order they arrive, so a request
        sees the effect of those before it, as with a series of ``call``.
        """
        if self._loop is None or self._conn is None:
            raise RuntimeError(f"use {type(self).__name__} as a context manager")
        conn = self._conn

        async def all_of() -> list[dict[str, Any] | PeerException]:
            calls = [conn.call(op, timeout=self.timeout, **args) for op, args in requests]
            results = await asyncio.gather(*calls, return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException) and not isinstance(result, PeerException):
                    raise result
            return results  # type: ignore[return-value]

        return self._loop.run_until_complete(all_of())


def call_sync(host: str, port: int, op: str, *, timeout: float = DEFAULT_TIMEOUT, **args: Any) -> dict[str, Any]:
    """Synchronous ``call_once`` for code without an event loop (views, Celery tasks).

    Same exceptions as ``PeerConnection.call``. Raises ``RuntimeError`` if called from a
    thread with a running event loop (use the async API there).
    """
    return asyncio.run(call_once(host, port, op, timeout=timeout, **args))


def probe_sync(host: str, port: int, timeout: float = DEFAULT_TIMEOUT) -> ProbeResult:
    """Synchronous ``probe``; same rules as ``call_sync``."""
    return asyncio.run(probe(host, port, timeout))
