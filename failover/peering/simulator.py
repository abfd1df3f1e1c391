"""Server machinery shared by the peer simulators.

* ``Connection``: one accepted TCP connection with an ordered outbox; the outbox is where
  the latency fault is applied, so replies and events keep their order.
* ``LineServer``: an asyncio TCP server speaking the line protocol.
* ``PeerSimulator``: a simulated peer (subclassed by ``MediaBlender`` and
  ``AdminWorkstation``) with ``hello``, ``ping``, ``fault``, event broadcast and fault
  injection. Operations are methods decorated with ``@op``.
* ``ControlServer``: an optional extra port per process that reaches every simulated peer
  of the process *without* faults, so a peer whose own port is refused can be restored.
* ``serve``: run a set of peers (one, or thousands for a scale benchmark) until SIGTERM/SIGINT.

Operations run synchronously on the event loop, so each one is atomic and peer state needs
no locks. The one exception, an AW change that awaits its disk write, works on a copy
under a per-peer lock and publishes it when the write is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, TypeVar

from . import protocol
from .protocol import Message

log = logging.getLogger("failover.peering")

# A client that stops reading would otherwise make the outbox grow without bound with
# broadcast events; past this many queued messages the connection is dropped instead.
OUTBOX_LIMIT = 4096
MAX_LATENCY_MS = 600_000
# Heartbeat intervals a client may ask for (``subscribe_heartbeat``).
MIN_HEARTBEAT_MS = 10
MAX_HEARTBEAT_MS = 60_000
ID_PATTERN = protocol.ID_PATTERN

T = TypeVar("T")


class OpError(Exception):
    """Raised by an operation to answer ``{"ok": false, "error": {code, message}}``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class OpSpec:
    """Declaration of one operation: its wire name and the argument names it accepts."""

    name: str
    args: frozenset[str]
    # Fault-exempt ops are answered even while the peer is stalled or slowed: they are the
    # test hooks that undo the fault.
    fault_exempt: bool = False


OpHandler = Callable[[Any, "Args"], "dict[str, Any] | Awaitable[dict[str, Any]]"]


def op(name: str, *args: str, fault_exempt: bool = False) -> Callable[[T], T]:
    """Mark a ``PeerSimulator`` method as the handler of operation ``name``.

    ``args`` lists the accepted argument names; a request with any other argument is
    answered ``invalid`` before the handler runs (typos must not silently become defaults).
    The handler receives an ``Args`` and returns the result dict (or an awaitable of it).
    """

    def decorate(func: T) -> T:
        func._peer_op = OpSpec(name, frozenset(args), fault_exempt)  # type: ignore[attr-defined]
        return func

    return decorate


class Args:
    """Typed, validating access to a request's arguments; every failure is ``OpError(invalid)``.

    Each accessor requires its argument; wrap it in ``opt`` for an optional one:
    ``args.opt(args.integer, "latency_ms", maximum=1000)`` is ``None`` when absent or null.
    """

    def __init__(self, values: dict[str, Any], conn: Connection | None = None) -> None:
        self.values = values
        # The connection the request came on; None when it came through the control port.
        self.conn = conn

    def has(self, key: str) -> bool:
        return self.values.get(key) is not None

    def opt(self, accessor: Callable[..., T], key: str, **kwargs: Any) -> T | None:
        return accessor(key, **kwargs) if self.has(key) else None

    def _get(self, key: str) -> Any:
        if not self.has(key):
            raise OpError(protocol.INVALID, f"missing argument '{key}'")
        return self.values[key]

    def text(self, key: str, *, max_len: int = 200) -> str:
        """A non-blank string of at most ``max_len`` characters."""
        value = self._get(key)
        if not isinstance(value, str) or not value.strip() or len(value) > max_len:
            raise OpError(protocol.INVALID, f"'{key}' must be a non-blank string of at most {max_len} characters")
        return value

    def identifier(self, key: str) -> str:
        """An id: 1-64 characters, letters, digits and ``_.:@-``, not starting with punctuation."""
        value = self._get(key)
        if not isinstance(value, str) or not ID_PATTERN.match(value):
            raise OpError(protocol.INVALID, f"'{key}' must be an id (1-64 of A-Z a-z 0-9 _.:@-)")
        return value

    def identifier_list(self, key: str) -> list[str]:
        """A list of distinct ids (possibly empty)."""
        value = self._get(key)
        if not isinstance(value, list) or not all(isinstance(v, str) and ID_PATTERN.match(v) for v in value):
            raise OpError(protocol.INVALID, f"'{key}' must be a list of ids")
        if len(set(value)) != len(value):
            raise OpError(protocol.INVALID, f"'{key}' contains duplicates")
        return list(value)

    def integer(self, key: str, *, minimum: int = 0, maximum: int = 2**31) -> int:
        """An integer (not a bool) within ``[minimum, maximum]``."""
        value = self._get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
            raise OpError(protocol.INVALID, f"'{key}' must be an integer from {minimum} to {maximum}")
        return value

    def boolean(self, key: str) -> bool:
        value = self._get(key)
        if not isinstance(value, bool):
            raise OpError(protocol.INVALID, f"'{key}' must be true or false")
        return value

    def choice(self, key: str, choices: Iterable[str]) -> str:
        options = tuple(choices)
        value = self._get(key)
        if value not in options:
            raise OpError(protocol.INVALID, f"'{key}' must be one of {', '.join(options)}")
        return str(value)


class Connection:
    """One accepted TCP connection: an ordered outbox drained by a writer task.

    ``send`` never blocks: it enqueues a frame due at ``now + delay``; the writer sends
    frames in order, each no earlier than its due time (this is how latency is injected
    without reordering). ``subscribed`` connections (those that said ``hello``) get events.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, faulty: bool) -> None:
        self.reader = reader
        self.writer = writer
        # Whether the owning peer's faults apply (false on the control port).
        self.faulty = faulty
        self.subscribed = False
        # The heartbeat pushed on this connection (``subscribe_heartbeat``), if asked for.
        self.heartbeat: asyncio.TimerHandle | None = None
        self.peername = writer.get_extra_info("peername")
        self._outbox: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(OUTBOX_LIMIT)
        self._closing = False
        self._writer_task = asyncio.create_task(self._write_loop())

    @property
    def closing(self) -> bool:
        return self._closing

    def send(self, message: Message, *, delay: float = 0.0) -> None:
        """Queue ``message``; an oversize response becomes a ``frame_too_large`` error."""
        if self._closing:
            return
        try:
            frame = protocol.encode(message)
        except protocol.FrameTooLarge as exc:
            if not protocol.is_response(message):
                log.warning("dropping oversize event %s to %s", message.get("event"), self.peername)
                return
            frame = protocol.encode(protocol.error_response(message["id"], exc.code, "response " + exc.message))
        try:
            self._outbox.put_nowait((asyncio.get_running_loop().time() + delay, frame))
        except asyncio.QueueFull:
            log.warning("client %s is not reading; dropping the connection", self.peername)
            self.abort()

    def stop_heartbeat(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.cancel()
            self.heartbeat = None

    def close_after_flush(self) -> None:
        """Close gracefully once every queued frame has been written (FIN, not RST)."""
        self.stop_heartbeat()
        if self._closing:
            return
        self._closing = True
        try:
            self._outbox.put_nowait(None)
        except asyncio.QueueFull:
            self.abort()

    def abort(self) -> None:
        """Drop the connection at once, discarding queued frames."""
        self._closing = True
        self.stop_heartbeat()
        self._writer_task.cancel()
        self.writer.transport.abort()

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while (item := await self._outbox.get()) is not None:
                due, frame = item
                if (delay := due - loop.time()) > 0:
                    await asyncio.sleep(delay)
                self.writer.write(frame)
                await self.writer.drain()
        except (ConnectionError, OSError):
            pass  # the client went away; the reader side notices and cleans up
        finally:
            self.writer.close()


class LineServer:
    """An asyncio TCP server of the line protocol; subclasses implement ``dispatch``.

    Each connection's requests are handled one at a time, in order (replies stay ordered
    without per-request tasks). Bad input gets an error reply and never ends the server.
    """

    faulty: ClassVar[bool] = False

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.connections: set[Connection] = set()
        self._server: asyncio.Server | None = None

    @property
    def listening(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        """Bind (``port`` 0 picks a free port, stored in ``self.port``), run ``prepare``, serve."""
        server = await self._bind()
        try:
            self.prepare()
        except BaseException:
            server.close()
            raise
        await server.start_serving()

    def prepare(self) -> None:
        """Hook run after binding and before the first connection is served."""

    async def _bind(self) -> asyncio.Server:
        # start_serving=False: the port is known (for {port} in file names) before anyone
        # can connect, so state is loaded before the first request.
        server = await asyncio.start_server(
            self._serve_connection,
            self.host,
            self.port,
            limit=protocol.MAX_FRAME_BYTES,
            reuse_address=True,
            start_serving=False,
        )
        self.port = server.sockets[0].getsockname()[1]
        self._server = server
        return server

    def close_listener(self) -> None:
        """Stop accepting: new connections are refused by the kernel from now on."""
        if self._server is not None:
            self._server.close()
            self._server = None

    async def stop(self) -> None:
        """Close the listener and drop every connection."""
        self.close_listener()
        for conn in list(self.connections):
            conn.abort()
        self.connections.clear()

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Connection(reader, writer, faulty=self.faulty)
        self.connections.add(conn)
        try:
            while not conn.closing:
                try:
                    line = await protocol.read_frame(reader)
                except protocol.ProtocolError as exc:
                    self.reply(conn, protocol.error_response(None, exc.code, exc.message))
                    continue
                except (ConnectionError, OSError):
                    break
                if line is None:
                    break
                if line.strip():  # blank lines are ignored (handy with netcat)
                    await self._handle_line(conn, line)
        finally:
            self.connections.discard(conn)
            # Graceful: a client that half-closes after its request still gets the reply.
            conn.close_after_flush()

    async def _handle_line(self, conn: Connection, line: bytes) -> None:
        try:
            message = protocol.decode(line)
            request_id, name, args = protocol.parse_request(message)
        except protocol.ProtocolError as exc:
            self.reply(conn, protocol.error_response(exc.request_id, exc.code, exc.message))
            return
        await self.dispatch(conn, request_id, name, args)

    def reply(self, conn: Connection, message: Message, *, exempt: bool = False) -> None:
        """Send a response on ``conn``; ``PeerSimulator`` applies its faults here."""
        conn.send(message)

    async def dispatch(self, conn: Connection, request_id: int, name: str, args: dict[str, Any]) -> None:
        raise NotImplementedError


@dataclass
class Faults:
    """Injected faults of one peer (see ``PeerSimulator.op_fault``)."""

    latency_ms: int = 0
    stall: bool = False
    refuse: bool = False


class PeerSimulator(LineServer):
    """A simulated peer. Subclasses set ``kind`` and add ``@op`` methods.

    Events are broadcast to connections that said ``hello``. Faults apply to this peer's
    own port only; the control port (``ControlServer``) reaches ``handle_request`` directly.
    """

    kind: ClassVar[str] = "peer"
    faulty: ClassVar[bool] = True
    ops: ClassVar[dict[str, tuple[OpSpec, OpHandler]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        ops: dict[str, tuple[OpSpec, OpHandler]] = {}
        for klass in reversed(cls.__mro__):
            for attr in vars(klass).values():
                spec = getattr(attr, "_peer_op", None)
                if isinstance(spec, OpSpec):
                    ops[spec.name] = (spec, attr)
        cls.ops = ops

    def __init__(self, *, name: str, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host=host, port=port)
        # "{port}" in the name is replaced once the port is bound (free ports, many peers).
        self.name_template = name
        self.name = name
        self.faults = Faults()
        self.started_at = time.monotonic()
        # False: behave as a peer from before heartbeats (``--no-heartbeat``), which
        # answers ``subscribe_heartbeat`` with ``unknown_op``: the monitor then probes.
        self.offers_heartbeat = True

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.host}:{self.port}>"

    def prepare(self) -> None:
        self.name = self.name_template.replace("{port}", str(self.port))

    # -- request handling ---------------------------------------------------------------

    async def handle_request(self, conn: Connection | None, name: str, args: dict[str, Any]) -> dict[str, Any]:
        """Run operation ``name``; return its result or raise ``OpError``. No faults applied."""
        entry = self.ops.get(name)
        if entry is None or (name == "subscribe_heartbeat" and not self.offers_heartbeat):
            raise OpError(protocol.UNKNOWN_OP, f"unknown operation '{name}' for {self.kind}")
        spec, handler = entry
        unexpected = sorted(set(args) - spec.args)
        if unexpected:
            raise OpError(protocol.INVALID, f"unexpected argument(s) for {name}: {', '.join(unexpected)}")
        result = handler(self, Args(args, conn))
        if inspect.isawaitable(result):
            result = await result
        return result

    async def dispatch(self, conn: Connection, request_id: int, name: str, args: dict[str, Any]) -> None:
        spec = self.ops.get(name, (None, None))[0]
        exempt = spec is not None and spec.fault_exempt
        if self.faults.stall and not exempt:
            return  # a hung peer: the request is read and dropped, the connection stays open
        self.reply(conn, await answer(self, conn, request_id, name, args), exempt=exempt)

    def reply(self, conn: Connection, message: Message, *, exempt: bool = False) -> None:
        if exempt:
            conn.send(message)
        elif not self.faults.stall:
            conn.send(message, delay=self.faults.latency_ms / 1000)

    def emit(self, name: str, **fields: Any) -> None:
        """Broadcast an event to subscribed connections, after the current request's reply."""
        asyncio.get_running_loop().call_soon(self.broadcast, protocol.event(name, **fields))

    def broadcast(self, message: Message) -> None:
        """Send an event now to every subscribed connection (nothing while stalled)."""
        if self.faults.stall:
            return
        for conn in list(self.connections):
            if conn.subscribed:
                conn.send(message, delay=self.faults.latency_ms / 1000)

    # -- operations every peer has ------------------------------------------------------

    @op("hello", "protocol", "client")
    def op_hello(self, args: Args) -> dict[str, Any]:
        version = args.opt(args.integer, "protocol")
        if version is not None and version != protocol.PROTOCOL_VERSION:
            raise OpError(
                protocol.UNSUPPORTED_VERSION,
                f"protocol {version} not supported; this peer speaks {protocol.PROTOCOL_VERSION}",
            )
        args.opt(args.text, "client")
        if args.conn is not None:
            args.conn.subscribed = True
        return {
            "kind": self.kind,
            "name": self.name,
            "protocol": protocol.PROTOCOL_VERSION,
            "ops": sorted(name for name in self.ops if name != "subscribe_heartbeat" or self.offers_heartbeat),
            "time": time.time(),
        }

    @op("ping")
    def op_ping(self, args: Args) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "port": self.port,
            "uptime": round(time.monotonic() - self.started_at, 3),
            "time": time.time(),
        }

    @op("subscribe_heartbeat", "interval_ms")
    def op_subscribe_heartbeat(self, args: Args) -> dict[str, Any]:
        """Push ``heartbeat`` events on this connection every ``interval_ms`` until it
        closes (0 stops them). Replaces an earlier subscription of the same connection."""
        interval_ms = args.integer("interval_ms", maximum=MAX_HEARTBEAT_MS)
        if 0 < interval_ms < MIN_HEARTBEAT_MS:
            raise OpError(protocol.INVALID, f"'interval_ms' must be 0 or {MIN_HEARTBEAT_MS} to {MAX_HEARTBEAT_MS}")
        conn = args.conn
        if conn is None:
            raise OpError(protocol.INVALID, "heartbeats go over the peer's own port, not the control port")
        conn.stop_heartbeat()
        if interval_ms:
            loop = asyncio.get_running_loop()
            interval = interval_ms / 1000
            # After this reply: the first heartbeat one interval from now.
            conn.heartbeat = loop.call_later(interval, self._beat, conn, interval, loop.time() + interval, 1)
        return {"interval_ms": interval_ms}

    def _beat(self, conn: Connection, interval: float, due: float, seq: int) -> None:
        """Send heartbeat ``seq`` and schedule the next on a steady cadence: a late wake-up
        (a busy machine) is not carried into every later beat; beats missed are skipped."""
        loop = asyncio.get_running_loop()
        if conn.closing:
            return
        # Faults apply as to every message: nothing while stalled, late under latency.
        if not self.faults.stall:
            conn.send(protocol.event("heartbeat", seq=seq, time=time.time()), delay=self.faults.latency_ms / 1000)
        now = loop.time()
        missed = max(0, int((now - due) // interval))
        due += (missed + 1) * interval
        conn.heartbeat = loop.call_later(due - now, self._beat, conn, interval, due, seq + 1 + missed)

    @op("fault", "latency_ms", "stall", "refuse", "clear", fault_exempt=True)
    async def op_fault(self, args: Args) -> dict[str, Any]:
        latency = args.opt(args.integer, "latency_ms", maximum=MAX_LATENCY_MS)
        stall = args.opt(args.boolean, "stall")
        refuse = args.opt(args.boolean, "refuse")
        if args.opt(args.boolean, "clear"):
            latency, stall, refuse = 0, False, False
        if latency is not None:
            self.faults.latency_ms = latency
        if stall is not None:
            self.faults.stall = stall
        if refuse is True and not self.faults.refuse:
            self.faults.refuse = True
            # After this reply is queued: close the listener, then drop the peer-port
            # connections (the one asking included, once its reply is flushed).
            asyncio.get_running_loop().call_soon(self._refuse)
        elif refuse is False and self.faults.refuse:
            try:
                server = await self._bind()
            except OSError as exc:
                raise OpError(protocol.CONFLICT, f"cannot listen again on port {self.port}: {exc}") from None
            await server.start_serving()
            self.faults.refuse = False
        if any(v is not None for v in (latency, stall, refuse)):
            log.info("%r faults now %s", self, self.faults)
        return {"faults": asdict(self.faults)}

    def _refuse(self) -> None:
        self.close_listener()
        for conn in list(self.connections):
            conn.close_after_flush()


async def answer(
    peer: PeerSimulator, conn: Connection | None, request_id: int, name: str, args: dict[str, Any]
) -> Message:
    """The response message for one request to ``peer`` (errors included, never raises)."""
    try:
        result = await peer.handle_request(conn, name, args)
    except OpError as exc:
        return protocol.error_response(request_id, exc.code, exc.message)
    except Exception:
        log.exception("%r: operation %s failed", peer, name)
        return protocol.error_response(request_id, protocol.INTERNAL, f"internal error in {name}")
    return protocol.ok_response(request_id, **result)


class ControlServer(LineServer):
    """The process's control port: every op of every simulated peer, without faults.

    Requests carry ``"peer": <port>`` to pick the peer (optional when the process serves
    one peer). Its own ops: ``hello``, ``ping``, ``list_peers``. No events are pushed.
    """

    def __init__(self, peers: Sequence[PeerSimulator], *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host=host, port=port)
        self.peers = list(peers)

    def _target(self, port: Any) -> PeerSimulator:
        if port is None:
            if len(self.peers) == 1:
                return self.peers[0]
            raise OpError(protocol.INVALID, "'peer' (the peer's port) is required: this process serves many peers")
        for peer in self.peers:
            if peer.port == port:
                return peer
        raise OpError(protocol.NOT_FOUND, f"no peer on port {port} in this process")

    async def dispatch(self, conn: Connection, request_id: int, name: str, args: dict[str, Any]) -> None:
        own = {"hello", "ping", "list_peers"}
        if name in own and "peer" not in args:
            peers = [{"kind": p.kind, "name": p.name, "port": p.port} for p in self.peers]
            result: dict[str, Any] = {"kind": "control", "protocol": protocol.PROTOCOL_VERSION}
            if name == "list_peers":
                result["peers"] = peers
            else:
                result["peers"] = len(peers)
            self.reply(conn, protocol.ok_response(request_id, **result))
            return
        try:
            peer = self._target(args.pop("peer", None))
        except OpError as exc:
            self.reply(conn, protocol.error_response(request_id, exc.code, exc.message))
            return
        self.reply(conn, await answer(peer, None, request_id, name, args))


ReadyCallback = Callable[[Sequence[PeerSimulator], "ControlServer | None"], None]


async def serve(
    peers: Sequence[PeerSimulator],
    *,
    control_port: int | None = None,
    control_host: str = "127.0.0.1",
    on_ready: ReadyCallback | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Start ``peers`` (and a control port if ``control_port`` is not None), call
    ``on_ready`` once all listen, run until ``stop`` is set or SIGTERM/SIGINT, then stop all.

    Raises ``OSError`` if a port cannot be bound (the already started ones are stopped).
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    control = ControlServer(peers, host=control_host, port=control_port) if control_port is not None else None
    started: list[LineServer] = []
    try:
        for server in [*peers, *([control] if control else [])]:
            await server.start()
            started.append(server)
        if on_ready is not None:
            on_ready(peers, control)
        await stop.wait()
    finally:
        for server in started:
            await server.stop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signum)
