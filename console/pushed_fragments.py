"""A watched console fragment, sent on the page's own socket when an event changes it.

Why: after a failover every overview page fetched its fragment again. The render was
shared (``console/live_fragments.py``) and the answer replayed on the event loop
(``collabadmin/fragment_fast_path.py``), but each of 200 pages still cost the node an HTTP
request and answer, one after the other on one event loop: a third of a page's wait, and
the sessions pages' 250 fetches a second queued behind them (docs/performance.md, issue 18).

How: a page that asks for it (``/ws/status/?push=<its fragment's URL>``, console.js) is a
*watcher* of that view. The watchers of one node that would get the same render (same
path and filters, same access class, same time zone: the render's key) form one *view*
here. The sockets themselves are in no event group: the process is, once, on a channel of
its own (a channel-layer delivery per event, not per event and socket: the 50 sessions
pages' sockets took 2,500 a second). When it hears an event a view's pages do not
ignore, the view is rendered once, through Django, as the first watcher's own fetch would be (its cookies, its host, the
view's access check; the shared render serves it, so a render a fetch made is reused),
and every watcher of the view is sent ``{"type": "fragment", "seq", "rendered", "delta",
"html"}``: only the blocks its page lacks when the node holds the render it shows
(``delta`` names it; ``console/live_blocks.py``), else the whole fragment. One message
per distinct base, made and gzipped once whatever the number of watchers, sent as a binary
frame. The page applies it as it
would apply its fetch's answer and fetches nothing.

Like the sockets' coalescing (``common/coalesce.py``), a view is rendered at most once per
:data:`WINDOW_SECONDS` (100 ms) and never twice at once: the first event of a quiet spell at once,
the newest of the rest after it (a render reflects every event numbered before it began).

Nothing is lost when a push cannot be made: a render that fails, is not the shared
render (a log-in gone: Django answered a redirect) or takes no render at all sends the
view's watchers the plain event instead, and the page fetches as before. A page that
cannot apply a push (its blocks are not those the delta was made against) fetches. A page
tells its socket which render it shows after each fetch (``{"type": "shown", "version"}``)
so that the next push is a delta from that.

Access: a watcher's view is the render's key, so a watcher gets only what its own fetch
would have got; the key's access class is read again when the user is saved
(``access.check``), and a user who loses the desktop is closed as before
(console/consumers.py). A watcher's log-in (its session) is checked before a push when
anyone's access changed since the last check (``common.access_epoch``: a log-out moves it)
and at least every :data:`LOGIN_CHECK_SECONDS`, in one query for the view: a page whose
log-in is gone gets the event instead, and its fetch takes it to the log-in page.

Hand-written: Channels sends what each consumer is given; rendering once for a group of
sockets, by the key their own fetches would share, is this product's (measured against
the fetching pages in docs/performance.md, issue 18). The render itself is Django's own
handler, the transport Channels' layer and uvicorn's WebSockets.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import logging
import math
import re
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.core.handlers.wsgi import WSGIHandler, WSGIRequest
from django.db import close_old_connections
from django.http import QueryDict
from django.urls import Resolver404, resolve
from django.utils import timezone

from common import access_epoch
from common.viewer_zone import zone_from_cookies
from console.live_fragments import GZIP_LEVEL, SEQ_PARAM, Key, Render, access_class, filters_query, shared_renders

logger = logging.getLogger(__name__)

PUSH_PARAM = "push"
FRAGMENT_TYPE = "fragment"
SHOWN_TYPE = "shown"
_VERSION = re.compile(r"\d{1,20}\.\d{1,20}")
# The headers of the socket's handshake that the render's request carries, as the page's
# own fetch would: who it is (cookies), which host and scheme it came through (the
# balancer's X-Forwarded-*), its language.
_KEPT_HEADERS = frozenset(
    {b"host", b"cookie", b"x-forwarded-for", b"x-forwarded-proto", b"accept-language", b"user-agent"}
)
# At most one render of a view per window (the newest event of the rest after it). Half the
# sockets' coalescing window (common/coalesce.py, which a fetching page needs to spare the
# node 50 fetches per window): a push is one render and one gzip per window whatever the
# watchers, and 0.1 s took the sessions pages' p50 from 134 to 80 ms for 9 points of a core
# (docs/performance.md, issue 18).
WINDOW_SECONDS = 0.1
# Renders leave the event loop: two threads (a node has two cores at most here, and the
# shared render admits one render of a view at a time anyway).
RENDER_THREADS = 2
# A watcher's log-in is checked again when anyone's access changes (common.access_epoch:
# a log-out, a role, a user saved) and at least this often (a log-in that expired).
LOGIN_CHECK_SECONDS = 30.0


def pushable_target(value: str) -> tuple[str, str] | None:
    """(path, query) of a ``?push=`` value naming a fragment whose renders are shared, or
    None (then the socket only forwards events, as before; also when ``LIVE_PUSH`` is off)."""
    if not settings.LIVE_PUSH or not value or len(value) > 2000:
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not parts.path.startswith("/") or parts.path.startswith("//"):
        return None
    try:
        match = resolve(parts.path)
    except Resolver404:
        return None
    return (parts.path, parts.query) if getattr(match.func, "shares_renders", False) else None


def zone_name(cookies: dict[str, str]) -> str:
    zone = zone_from_cookies(cookies)
    return zone.key if zone is not None else settings.TIME_ZONE


def view_key(target: tuple[str, str], user: Any, cookies: dict[str, str]) -> Key:
    """The render's key for this user's fetch of ``target`` (``live_fragments.render_key``)."""
    path, query = target
    return (path, filters_query(QueryDict(query)), access_class(user), zone_name(cookies))


def handshake_environ(scope: dict[str, Any], target: tuple[str, str]) -> dict[str, Any]:
    """A WSGI environ for a GET of ``target`` by the browser that opened the socket."""
    path, query = target
    secure = scope.get("scheme") == "wss"
    host, port = scope.get("server") or ("localhost", 443 if secure else 80)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": str(host),
        "SERVER_PORT": str(port),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": (scope.get("client") or ("127.0.0.1", 0))[0],
        "HTTP_X_REQUESTED_WITH": "fetch",
        "wsgi.url_scheme": "https" if secure else "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }
    for name, value in scope.get("headers", []):
        if name in _KEPT_HEADERS:
            environ["HTTP_" + name.decode("latin-1").upper().replace("-", "_")] = value.decode("latin-1")
    return environ


_handler: WSGIHandler | None = None


def _django() -> WSGIHandler:
    global _handler  # noqa: PLW0603 (one handler per process: it loads the middleware once)
    if _handler is None:
        _handler = WSGIHandler()
    return _handler


def render_as_fetched(environ: dict[str, Any], seq: int) -> tuple[Render, Key] | None:
    """The shared render reflecting at least ``seq`` that this browser's fetch would get
    (through every middleware and the view's access check), with its key; None when the
    answer is anything else (a redirect to the log-in, an error). Runs on a thread."""
    query = QueryDict(environ["QUERY_STRING"], mutable=True)
    query[SEQ_PARAM] = str(seq)
    close_old_connections()
    try:
        response = _django().get_response(WSGIRequest(dict(environ, QUERY_STRING=query.urlencode())))
        response.close()
        render, key = getattr(response, "shared_render", None), getattr(response, "render_key", None)
        return (render, key) if render is not None and key is not None else None
    finally:
        close_old_connections()


def logged_in(watchers: list[tuple[str, int]]) -> set[str]:
    """The session keys among ``(session key, user id)`` still logged in as that user, in
    one query (the database sessions Django keeps by default)."""
    keys = {key for key, _ in watchers if key}
    rows = Session.objects.filter(session_key__in=keys, expire_date__gt=timezone.now())
    users = {row.session_key: SessionStore().decode(row.session_data).get(SESSION_KEY) for row in rows}
    return {key for key, user_id in watchers if key in users and users[key] == str(user_id)}


def fragment_message(render: Render, key: Key, shown: str) -> bytes:
    """The push for a page that shows ``shown``: the blocks it lacks when this node still
    holds that render, else the whole fragment; JSON, gzipped (a binary frame).

    Gzipped here, once for every socket that gets it, because per-message deflate
    compresses each socket's copy on its own: 200 copies of a 27 KB overview delta took
    0.4 ms each, 80 of the 140 ms a push to 200 sockets took; the gzipped bytes pass
    through it in a sixth of that (docs/performance.md, issue 18)."""
    base = shared_renders.held(key, shown)
    delta = render.keeps_any(base)
    html = render.delta_from(base, "identity") if delta else render.content
    message = {
        "type": FRAGMENT_TYPE,
        "seq": render.seq,
        "rendered": render.rendered_ms,
        "delta": base.version if delta and base is not None else None,
        "html": html.decode("utf-8"),
    }
    return gzip.compress(json.dumps(message).encode(), compresslevel=GZIP_LEVEL, mtime=0)


def shown_version(message: Any) -> str | None:
    """The render a page says it shows (``{"type": "shown", "version": "seq.rendered"}``)."""
    if isinstance(message, dict) and message.get("type") == SHOWN_TYPE:
        version = message.get("version")
        if isinstance(version, str) and _VERSION.fullmatch(version):
            return version
    return None


@dataclass(eq=False)
class Watcher:
    """One page's socket that asked for pushes."""

    key: Key
    environ: dict[str, Any]
    send_bytes: Callable[[bytes], Awaitable[None]]
    send_event: Callable[[dict[str, Any]], Awaitable[None]]
    session_key: str = ""
    user_id: int = 0
    ignored: frozenset[str] = frozenset()  # the event types its page shows nothing of
    shown: str = ""  # the render the page shows, as it told us or as we last sent it
    logged_in: bool = True  # as last checked (console/pushed_fragments.logged_in)

    @property
    def view(self) -> ViewKey:
        return (self.key, self.ignored)


@dataclass(eq=False)
class _View:
    watchers: set[Watcher] = field(default_factory=set)
    heard: int = -1  # the newest event number a push was asked for
    wanted: int | None = None  # the newest number a push is due for
    event: dict[str, Any] | None = None  # that event, sent as it is if no push can be made
    pushed: int = -1  # the number the last push's render reflects
    last_start: float = -math.inf
    timer: asyncio.TimerHandle | None = None
    task: asyncio.Task | None = None
    checked_epoch: int | None = None  # common.access_epoch when the log-ins were last checked
    checked_at: float = -math.inf


RenderFunction = Callable[[dict[str, Any], int], "tuple[Render, Key] | None"]
ViewKey = tuple[Key, frozenset[str]]  # the render's key, and the events its pages ignore


@dataclass(eq=False)
class _Listener:
    """The process's one channel in the groups its pushed views hear (per event loop)."""

    loop: asyncio.AbstractEventLoop
    channel: str
    groups: set[str]
    task: asyncio.Future[None] | None = None


class PushedViews:
    """The watched views of this process, each rendered once per window and pushed."""

    def __init__(self, render: RenderFunction = render_as_fetched) -> None:
        self._render = render
        self._views: dict[ViewKey, _View] = {}
        self._listener: _Listener | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.renders = 0  # renders asked for (tests, benchmarks)

    async def join(self, watcher: Watcher, groups: Iterable[str]) -> None:
        """Push to ``watcher`` what changes its view, on the events of ``groups``: this
        process hears them once, on one channel of its own, whatever the number of its
        watchers (each socket in the groups itself was a delivery per event and socket:
        2,500 a second to 50 sessions pages)."""
        self._views.setdefault(watcher.view, _View()).watchers.add(watcher)
        await self._listen_to(groups)

    def leave(self, watcher: Watcher) -> None:
        view = self._views.get(watcher.view)
        if view is None:
            return
        view.watchers.discard(watcher)
        if not view.watchers:
            if view.timer is not None:
                view.timer.cancel()
            if view.task is None:
                del self._views[watcher.view]

    def move(self, watcher: Watcher, key: Key) -> None:
        """The watcher's render key changed (its user's access class did)."""
        if key != watcher.key:
            self.leave(watcher)
            watcher.key, watcher.shown = key, ""
            self._views.setdefault(watcher.view, _View()).watchers.add(watcher)

    async def _listen_to(self, groups: Iterable[str]) -> None:
        layer = get_channel_layer()
        loop = asyncio.get_running_loop()
        listener = self._listener
        if listener is None or listener.loop is not loop or listener.task is None or listener.task.done():
            listener = self._listener = _Listener(loop, await layer.new_channel("pushed."), set())
            listener.task = asyncio.ensure_future(self._listen(layer, listener.channel))
        for group in set(groups) - listener.groups:
            await layer.group_add(group, listener.channel)
            listener.groups.add(group)

    async def _listen(self, layer: Any, channel: str) -> None:
        while True:
            try:
                message = await layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis away: the layer reconnects and subscribes again
                logger.warning("pushed fragments: the channel layer failed; listening again", exc_info=True)
                await asyncio.sleep(1)
                continue
            if message.get("type") == "live.event":
                self.heard(message["event"])

    def heard(self, event: dict[str, Any]) -> None:
        """The process heard ``event``: a push is due for every view whose pages do not
        ignore it, unless one is already due for it."""
        seq = event.get("seq")
        if not isinstance(seq, int):
            return
        for key, view in list(self._views.items()):
            if event.get("type") in key[1] or not view.watchers or seq <= max(view.heard, view.pushed):
                continue
            view.heard, view.wanted, view.event = seq, seq, event
            self._pump(key, view)

    def _pump(self, key: ViewKey, view: _View) -> None:
        if view.wanted is None or view.task is not None or view.timer is not None:
            return
        loop = asyncio.get_running_loop()
        wait = view.last_start + WINDOW_SECONDS - loop.time()
        if wait > 0:
            view.timer = loop.call_later(wait, self._timer_fired, key, view)
            return
        view.last_start = loop.time()
        view.task = asyncio.ensure_future(self._push(key, view))

    def _timer_fired(self, key: ViewKey, view: _View) -> None:
        view.timer = None
        self._pump(key, view)

    async def _push(self, key: ViewKey, view: _View) -> None:
        seq, event, view.wanted, view.event = view.wanted, view.event, None, None
        try:
            watchers = list(view.watchers)
            made = await self._render_for(view, watchers, seq) if watchers else None
            # No push (or a log-in gone): those pages get the event and fetch, as they did
            # before pushes (a log-in gone: the fetch takes the page to the log-in).
            fetching = watchers if made is None else [watcher for watcher in watchers if not watcher.logged_in]
            await asyncio.gather(*(watcher.send_event(event) for watcher in fetching), return_exceptions=True)
            if made is not None:
                render, render_key = made
                view.pushed = max(view.pushed, render.seq)
                await self._send(render, render_key, [watcher for watcher in watchers if watcher.logged_in])
        finally:
            view.task = None
            if view.watchers:
                self._pump(key, view)
            elif self._views.get(key) is view:
                del self._views[key]

    async def _render_for(self, view: _View, watchers: list[Watcher], seq: int) -> tuple[Render, Key] | None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(RENDER_THREADS, thread_name_prefix="pushed-fragment")
        self.renders += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, self._prepare, view, watchers, seq)
        except Exception:  # the pages fetch instead; the error is the node's to log
            logger.exception("pushed fragment %s: render failed; the pages fetch it", watchers[0].key[0])
            return None

    def _prepare(self, view: _View, watchers: list[Watcher], seq: int) -> tuple[Render, Key] | None:
        """(On a thread.) The watchers' log-ins checked if due, then the render, as the first
        still logged in would fetch it."""
        epoch, now = access_epoch.current(), time.monotonic()
        if epoch is None or epoch != view.checked_epoch or now - view.checked_at > LOGIN_CHECK_SECONDS:
            close_old_connections()
            valid = logged_in([(watcher.session_key, watcher.user_id) for watcher in watchers])
            for watcher in watchers:
                watcher.logged_in = watcher.session_key in valid
            view.checked_epoch, view.checked_at = epoch, now
        reader = next((watcher for watcher in watchers if watcher.logged_in), None)
        return self._render(reader.environ, seq) if reader is not None else None

    async def _send(self, render: Render, key: Key, watchers: list[Watcher]) -> None:
        messages: dict[str, bytes] = {}
        sends = []
        for watcher in watchers:
            if watcher.shown not in messages:
                messages[watcher.shown] = fragment_message(render, key, watcher.shown)
            sends.append(watcher.send_bytes(messages[watcher.shown]))
            watcher.shown = render.version
        await asyncio.gather(*sends, return_exceptions=True)


pushed_views = PushedViews()


def push_query(query_string: bytes) -> str:
    """The ``?push=`` value of a socket's query string ('' without one)."""
    values = QueryDict(query_string.decode("latin-1")).getlist(PUSH_PARAM)
    return values[-1] if values else ""
