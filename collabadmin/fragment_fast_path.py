"""A watcher's next fetch of a shared live fragment, answered on the event loop.

Why: a shared render (``console/live_fragments.py``) made the *render* once per view and
event, but each further watcher still went through Django on one of the node's
``HTTP_THREADS`` threads: the log-in's session and user read from the database, every
middleware, 2-3 ms of CPU; and a request that needed a render under way *waited on its
thread*. With 50 sessions pages asking for the newest event five times a second, the ten
threads were all waiting for renders and every other request queued behind them
(docs/performance.md, issue 18: p99 3.7 s at 250 watchers, the node at 84 % of a core).

How: when Django answers a request from a shared render, this middleware keeps the whole
answer as it left (status, headers and body, per content coding) with the render, and
remembers (for :data:`VIEWER_SECONDS`, while no access changes) that this log-in (its
session cookie), with its time-zone cookie, was let see that path, and with which access
class and zone (the other parts of the render's key). The same log-in's next request for the same path that names
the number its page needs (``?live_seq=N``) is answered here, from a render that serves
it, or after waiting *on the event loop* for the render under way. Everything else goes to
Django as before: a log-in not seen lately, no number, no render that serves it in
:data:`WAIT_SECONDS`, a host not allowed, plain HTTP where HTTPS is required, any method
but GET.

A page that names the render it shows (``X-Live-Base``) is answered, here as in Django,
with only the blocks it lacks (``console/live_blocks.py``); the answer kept for replay is
always the whole render.

What this costs in access control, and why it is acceptable: a log-out, a user saved
(deactivated, made non-superuser) or deleted, a role given or taken away move one counter
in Redis (``common.access_epoch``); every node checks it (at most every 0.5 s) and trusts
nothing it remembered before the move. A change that bypasses ``save()`` (a queryset
``update()``, SQL), a log-in that expired, or a change made while Redis was away is seen
within :data:`VIEWER_SECONDS`, as the page's socket sees the first within a heartbeat and
closes, which makes the page reload through Django. Nothing new is shown meanwhile: only
renders of the view the log-in was let see, for the same access class. Without Redis
nothing is answered here.

Hand-written (no library caches per log-in *and* per live sequence number); measured in
docs/performance.md, issue 18.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.signals import user_logged_out
from django.http import QueryDict
from django.http.cookie import parse_cookie

from collabadmin.probes import host_allowed
from collabadmin.request_id import HEADER as REQUEST_ID_HEADER
from collabadmin.request_id import accepted_or_new
from collabadmin.timezones import COOKIE as ZONE_COOKIE
from common import access_epoch
from console import live_blocks
from console.live_fragments import (
    SEQ_PARAM,
    SERVED_KEY,
    Key,
    Render,
    Replay,
    Served,
    filters_query,
    shared_renders,
    wanted_seq_value,
)

# As long as a page's resync (30 s): an overview page, which fetches on a failover and at
# its resync, stays known between the two. Access changes are not waited out: they move
# common.access_epoch, which every node checks (at most CACHE_SECONDS late).
VIEWER_SECONDS = 30.0
WAIT_SECONDS = 5.0  # then Django (which waits up to live_fragments.WAIT_SECONDS, then renders)
# A render's answer leaves through this middleware a moment after the render ends.
REPLAY_WAIT_SECONDS = 1.0
MAX_VIEWERS = 10_000
# Per request, never replayed: the request's own id is set afresh; cookies are never shared.
NOT_REPLAYED = frozenset({b"set-cookie", REQUEST_ID_HEADER.lower().encode()})
SEQ_MARK = f"{SEQ_PARAM}=".encode()
BASE_HEADER = live_blocks.BASE_HEADER.lower().encode()
DELTA_HEADER = live_blocks.DELTA_HEADER.lower().encode()
# Set per content coding when the replays are made.
NOT_NEEDED = NOT_REPLAYED | {b"content-encoding", b"content-length", DELTA_HEADER}

Asgi = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


@dataclass(frozen=True)
class _Viewer:
    access: str
    zone: str
    until: float  # monotonic
    epoch: int  # common.access_epoch when Django let it see the path


class RecentViewers:
    """Log-ins let see a path lately: (session key, zone cookie, path) -> access class and zone."""

    def __init__(self, seconds: float = VIEWER_SECONDS, max_entries: int = MAX_VIEWERS) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, str, str], _Viewer] = OrderedDict()
        self.seconds = seconds
        self._max = max_entries

    def remember(self, session_key: str, zone_cookie: str, key: Key, epoch: int) -> None:
        path, _, access, zone = key
        viewer = _Viewer(access, zone, time.monotonic() + self.seconds, epoch)
        with self._lock:
            self._entries[(session_key, zone_cookie, path)] = viewer
            self._entries.move_to_end((session_key, zone_cookie, path))
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def recall(self, session_key: str, zone_cookie: str, path: str) -> _Viewer | None:
        """The log-in's entry for the path, unless it expired or any access changed since."""
        with self._lock:
            viewer = self._entries.get((session_key, zone_cookie, path))
        if viewer is None or viewer.until <= time.monotonic():
            return None
        return viewer if viewer.epoch == access_epoch.current() else None

    def forget(self, session_key: str) -> None:
        with self._lock:
            for entry in [entry for entry in self._entries if entry[0] == session_key]:
                del self._entries[entry]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


recent_viewers = RecentViewers()


def _forget_on_log_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    # Sent before the session is flushed: its key is still there. Other nodes forget it
    # when the epoch moves.
    session = getattr(request, "session", None)
    if session is not None and session.session_key:
        recent_viewers.forget(session.session_key)
    access_epoch.bump_after_commit()


user_logged_out.connect(_forget_on_log_out, dispatch_uid="fragment_fast_path.forget")


@dataclass(frozen=True)
class _Ask:
    """What the fast path needs of a request: None when it must go to Django."""

    path: str
    query: str
    wanted: int
    session_key: str
    zone_cookie: str
    coding: str
    request_id: str
    base: str  # the render the page shows (X-Live-Base), "" for none

    @classmethod
    def of(cls, scope: dict) -> _Ask | None:
        # Cheap first: most requests are not a live fragment's fetch.
        if scope["type"] != "http" or scope.get("method") != "GET" or SEQ_MARK not in scope.get("query_string", b""):
            return None
        if not _secure_enough(scope):
            return None
        headers = _headers(scope)
        cookies = parse_cookie(headers.get(b"cookie", b"").decode("latin-1"))
        session_key = cookies.get(settings.SESSION_COOKIE_NAME, "")
        params = QueryDict(scope.get("query_string", b""))
        wanted = wanted_seq_value(params.get(SEQ_PARAM, ""))
        if not session_key or wanted is None or not host_allowed(scope):
            return None
        accepts = headers.get(b"accept-encoding", b"").decode("latin-1").lower()
        return cls(
            path=scope.get("root_path", "") + scope["path"],
            query=filters_query(params),
            wanted=wanted,
            session_key=session_key,
            zone_cookie=cookies.get(ZONE_COOKIE, ""),
            coding="gzip" if "gzip" in accepts else "identity",
            request_id=accepted_or_new(headers.get(REQUEST_ID_HEADER.lower().encode(), b"").decode("latin-1")),
            base=headers.get(BASE_HEADER, b"").decode("latin-1")[:64],
        )


def _headers(scope: dict) -> dict[bytes, bytes]:
    return {name.lower(): value for name, value in scope.get("headers", ())}


def _secure_enough(scope: dict) -> bool:
    """Django would not redirect it to HTTPS (``SECURE_SSL_REDIRECT``)."""
    if not settings.SECURE_SSL_REDIRECT or scope.get("scheme") == "https":
        return True
    proxy = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if not proxy:
        return False
    name, secure_value = proxy
    header = name.removeprefix("HTTP_").lower().replace("_", "-").encode()
    value = _headers(scope).get(header, b"").decode("latin-1")
    return value.split(",", 1)[0].strip() == secure_value


class _Capture:
    """Passes an answer on to the client, keeping a copy of a shared fragment's."""

    def __init__(self, send: Callable[[dict], Awaitable[None]]) -> None:
        self._send = send
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.keeping = False
        self.complete = False

    async def send(self, message: dict) -> None:
        if message["type"] == "http.response.start":
            self.status, self.headers = message["status"], list(message.get("headers", ()))
            self.keeping = any(name.lower() == b"x-live-seq" for name, _ in self.headers)
        elif message["type"] == "http.response.body" and self.keeping:
            self.body.append(message.get("body", b""))
            self.complete = not message.get("more_body", False)
        await self._send(message)

    def coding(self) -> str:
        encoding = next((value for name, value in self.headers if name.lower() == b"content-encoding"), b"")
        return "gzip" if encoding.strip().lower() == b"gzip" else "identity"

    def replays(self, render: Render) -> dict[str, Replay]:
        """The answer for both content codings: the one that left, and the other made from
        it as fragment_gzip.py would (``render.compressed``: the same bytes, made once)."""
        headers = [(name, value) for name, value in self.headers if name.lower() not in NOT_NEEDED]
        if any(name.lower() == DELTA_HEADER for name, _ in self.headers):
            plain = render.content  # a delta left: the whole is the render (already clean of bidi controls)
        else:
            body = b"".join(self.body)
            plain = gzip.decompress(body) if self.coding() == "gzip" else body
        packed = render.compressed(plain)
        return {
            "identity": (self.status, [*headers, (b"content-length", str(len(plain)).encode())], plain),
            "gzip": (
                self.status,
                [*headers, (b"content-encoding", b"gzip"), (b"content-length", str(len(packed)).encode())],
                packed,
            ),
        }


class _Starters:
    """Per view, the one request on its way through Django to make the render that the
    others need: they wait for it on the loop instead of each taking a thread to wait on.
    Used on the event loop only."""

    def __init__(self) -> None:
        self._going: dict[Key, asyncio.Future[None]] = {}

    def going(self, key: Key) -> asyncio.Future[None] | None:
        return self._going.get(key)

    def start(self, key: Key) -> asyncio.Future[None] | None:
        if key in self._going:
            return None
        self._going[key] = asyncio.get_running_loop().create_future()
        return self._going[key]

    def done(self, key: Key, going: asyncio.Future[None]) -> None:
        if self._going.get(key) is going:
            del self._going[key]
        _settle(going)


class SharedFragmentFastPath:
    """ASGI: see the module's docstring. ``app`` is the node's HTTP stack (Django on its pool)."""

    def __init__(self, app: Asgi, viewers: RecentViewers = recent_viewers) -> None:
        self.app = app
        self.viewers = viewers
        self.starters = _Starters()
        self.answered = 0  # requests answered here (tests, benchmarks)

    async def __call__(self, scope: dict, receive, send) -> None:
        ask = _Ask.of(scope)
        answered, key = await self._answer(ask, send) if ask is not None else (False, None)
        if answered:
            self.answered += 1
            return
        going = self.starters.start(key) if key is not None else None
        try:
            await self._through_django(scope, receive, send)
        finally:
            if going is not None and key is not None:
                self.starters.done(key, going)

    async def _through_django(self, scope: dict, receive, send) -> None:
        # Read before Django checks the log-in: a change made meanwhile moves it past this.
        epoch = access_epoch.current()
        capture = _Capture(send)
        await self.app(scope, receive, capture.send)
        served = scope.get(SERVED_KEY)
        if isinstance(served, Served) and capture.complete and capture.status == 200:
            served.render.keep_replays(capture.replays(served.render))
            if epoch is not None:
                zone_cookie = parse_cookie(_headers(scope).get(b"cookie", b"").decode("latin-1")).get(ZONE_COOKIE, "")
                self.viewers.remember(served.session_key, zone_cookie, served.key, epoch)

    async def _answer(self, ask: _Ask, send) -> tuple[bool, Key | None]:
        """(answered here, the render's key when known: the request then goes to Django)."""
        viewer = self.viewers.recall(ask.session_key, ask.zone_cookie, ask.path)
        if viewer is None:
            return False, None
        key = (ask.path, ask.query, viewer.access, viewer.zone)
        render = await _render_serving(key, ask.wanted, self.starters)
        if render is None or not await _replayed(render):
            return False, key
        status, headers, body = render.replays[ask.coding]
        base = shared_renders.held(key, ask.base)
        if render.keeps_any(base):  # the page holds blocks of it: only the ones it lacks
            body = render.delta_from(base, ask.coding)
            headers = [
                *((name, value) for name, value in headers if name.lower() != b"content-length"),
                (b"content-length", str(len(body)).encode()),
                (DELTA_HEADER, base.version.encode()),
            ]
        headers = [*headers, (REQUEST_ID_HEADER.lower().encode(), ask.request_id.encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return True, key


async def _render_serving(key: Key, wanted: int, starters: _Starters | None = None) -> Render | None:
    """A render of ``key`` serving ``wanted``: the newest, or the next one, waited for on the
    event loop (never a thread): the render under way, or the request on its way through
    Django to make one. None when there is neither (this request then goes to make it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    while (render := shared_renders.serving(key, wanted)) is None:
        ended = loop.create_future()
        if not shared_renders.when_rendered(key, functools.partial(loop.call_soon_threadsafe, _settle, ended)):
            going = starters.going(key) if starters is not None else None
            if going is None:
                return None
            ended = asyncio.shield(going)
        try:
            await asyncio.wait_for(ended, max(0.0, deadline - loop.time()))
        except TimeoutError:
            return None
    return render


async def _replayed(render: Render) -> bool:
    """Whether the render's answers are kept, waiting (on the event loop) for the request
    that made it to leave through this middleware, which keeps them."""
    loop = asyncio.get_running_loop()
    kept = loop.create_future()
    if render.when_replayed(functools.partial(loop.call_soon_threadsafe, _settle, kept)):
        try:
            await asyncio.wait_for(kept, REPLAY_WAIT_SECONDS)
        except TimeoutError:  # that request went elsewhere (its client left): Django answers
            return False
    return bool(render.replays)


def _settle(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)
