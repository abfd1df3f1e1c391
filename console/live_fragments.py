"""One render of a live fragment, shared by every watcher allowed to see the same thing.

Every event on ``/ws/status/`` makes every open console page fetch its fragment again
(``static/console/console.js``). Rendered per request, the node's cost grew with the
number of watchers; 200 administrators on the overview asked for far more renders than
one node can make (docs/performance.md, issue 18). Here a fragment is rendered once per
*view* and *live sequence number*, and every request that wants the same view gets that
render:

* **The key** is everything that makes two renders differ: the path, the filters (the
  query string, sorted, without ``fragment`` and ``live_seq``), the viewer's *access
  class* (:func:`access_class`: never one render for users whose access differs) and the
  viewer's time zone (times are rendered in it, ``collabadmin/timezones.py``).
* **The sequence number** a render reflects is read from ``common/live.py``'s counter
  *before* its queries run. Events are numbered only after their transaction committed,
  so a render whose counter read ``S`` saw every change numbered up to ``S``.
* **A request says which number it needs** (``?live_seq=N``: the newest event its page
  has heard of). The newest render of its key at or above ``N`` serves it. A request
  without a number (the periodic resync, which heals an event lost on the way; a page
  without the script) needs a render started at most :data:`RECENT_SECONDS` ago: a lost
  event is then in the resync's render, or in the next resync's. (Not "the counter's
  current value": on the overview, which ignores the 50 session events a second, every
  resync would then cost a render.) A render older than :data:`MAX_AGE_SECONDS` serves
  nobody: some text is relative to now (how long a caller has waited).
* **Single flight**: while a render of a key is under way, the requests for that key wait
  for it instead of rendering too; if it is too old for them (its number below theirs)
  one of them renders next, after it. So a key is rendered at most one at a time, each
  render covering every event numbered before it started: under a stream of events the
  renders a second per view are bounded by the render time, never by the watchers.

**Only what changed**: a page that names the render it shows (``X-Live-Base``), when this
node still holds it (the last :data:`HISTORY` of its key), gets the new render without
the blocks it already has (``console/live_blocks.py``).

The answer carries ``X-Live-Seq`` (the number the render reflects) and
``X-Live-Rendered`` (when its queries started, in ms since the epoch): console.js applies an answer only if it
is newer than what the page shows, so a late answer never replaces a newer one.

Per process (each node renders for its own watchers); the agent desktop, whose
fragments are per agent, does not use it. Redis down: no number to key by, so every
request renders for itself, as before.
"""

from __future__ import annotations

import gzip
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse, QueryDict
from django.utils import timezone

from common import live
from common.bidi_controls import without_controls
from common.permissions import may
from common.roles import PERMISSIONS, VIEW_DESKTOP
from console import live_blocks

logger = logging.getLogger(__name__)

SEQ_PARAM = "live_seq"  # the number the page needs (console.js); never part of the key
NOT_IN_KEY = frozenset({SEQ_PARAM, "fragment"})
MAX_AGE_SECONDS = 10.0
RECENT_SECONDS = 2.0  # what a request without a number accepts
MAX_KEYS = 256
# The renders of a key a delta may start from (console/live_blocks.py), by their block
# names only (~1 KB each): an overview page refreshes on a failover or at its 30 s resync,
# while its view is rendered every 2 s or so for the other pages' resyncs.
HISTORY = 64
# A waiter gives up on a render that takes longer than this and renders for itself.
WAIT_SECONDS = 30.0
GZIP_LEVEL = 6  # 200 KiB of overview in a few ms, to about a tenth
SEQ_HEADER = "X-Live-Seq"
RENDERED_HEADER = "X-Live-Rendered"

Key = tuple[str, str, str, str]
Replay = tuple[int, list[tuple[bytes, bytes]], bytes]  # status, headers, body


def access_class(user: Any) -> str:
    """What a user may see and do, as far as the console's fragments go: the catalogue's
    permissions it holds (a fragment shows only the buttons its reader may use). Two users
    share a render only if this is the same for both."""
    if not may(user, VIEW_DESKTOP):
        return "none"
    return ",".join(permission.codename for permission in PERMISSIONS if may(user, permission))


def filters_query(params: QueryDict) -> str:
    """The filters part of a render's key: the query, sorted, without ``fragment`` and
    ``live_seq`` (also what collabadmin/fragment_fast_path.py keys by: they must agree)."""
    return urlencode(
        sorted((name, value) for name, values in params.lists() if name not in NOT_IN_KEY for value in values)
    )


def render_key(request: HttpRequest) -> Key:
    return (request.path, filters_query(request.GET), access_class(request.user), timezone.get_current_timezone_name())


def wanted_seq_value(value: str) -> int | None:
    """``?live_seq=``'s number, or None (absent or not a number)."""
    return int(value) if value.isdigit() and len(value) < 20 else None


def wanted_seq(request: HttpRequest) -> int | None:
    """The number the page asked for, or None (then: a recent render)."""
    return wanted_seq_value(request.GET.get(SEQ_PARAM, ""))


@dataclass(eq=False)
class Render:
    seq: int
    rendered_ms: int  # when it started (wall clock, ms): orders two renders of one number
    born: float  # when it started (monotonic), for its age
    content: bytes
    content_type: str
    # Its blocks, named (console/live_blocks.py): what a delta from it or to it is made of.
    blocks: tuple[tuple[str, int, int], ...] = ()
    # What the middleware make of it, made once per render: {name: (their input, output)}.
    _derived: dict[str, tuple[bytes, bytes]] = field(default_factory=dict)
    _deriving: threading.Lock = field(default_factory=threading.Lock)
    # The whole answer as it left the node, per content coding ("gzip", "identity"):
    # (status, headers, body), replayed by collabadmin/fragment_fast_path.py.
    replays: dict[str, Replay] = field(default_factory=dict)
    _replay_listeners: list[Callable[[], None]] = field(default_factory=list)

    @property
    def version(self) -> str:
        return live_blocks.version(self.seq, self.rendered_ms)

    @property
    def base(self) -> live_blocks.Base:
        """What a later render needs of this one to answer a page that shows it."""
        return live_blocks.Base(self.version, live_blocks.Numbered(self.content, self.blocks).names)

    def keeps_any(self, base: live_blocks.Base | None) -> bool:
        """Whether a page that shows ``base`` holds any block of this render (else a delta
        would be the whole, compressed once more for nothing)."""
        return base is not None and any(name in base.names for name, _, _ in self.blocks)

    def delta_from(self, base: live_blocks.Base, coding: str) -> bytes:
        """This render for a page that shows ``base``: the blocks it has left out
        (``coding`` "gzip" or "identity"), made once per base and coding."""
        numbered = live_blocks.Numbered(self.content, self.blocks)

        def make(content: bytes) -> bytes:
            body = live_blocks.delta(numbered, base.names)
            return gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0) if coding == "gzip" else body

        return self.derived(f"delta:{base.version}:{coding}", self.content, make)

    def delta_response(self, base: live_blocks.Base) -> HttpResponse:
        """The answer for a page that shows ``base`` (collabadmin/fragment_gzip.py
        compresses it from :meth:`delta_from`, made once per base)."""
        response = self.response()
        # The whole, gzipped, is what the fast path keeps for replay (from this answer): made
        # here, on the request's thread, rather than on the event loop when it is kept.
        self.compressed(self.content)
        response.content = self.delta_from(base, "identity")
        response[live_blocks.DELTA_HEADER] = base.version
        del response.shared_render  # its content is not the render's
        response.shared_delta = (self, base)
        return response

    def serves(self, wanted: int | None) -> bool:
        """Whether this render may answer a request that needs ``wanted`` (None: a recent one)."""
        age = time.monotonic() - self.born
        return age < RECENT_SECONDS if wanted is None else age < MAX_AGE_SECONDS and self.seq >= wanted

    def response(self) -> HttpResponse:
        response = HttpResponse(self.content, content_type=self.content_type)
        response["Cache-Control"] = "no-store"
        response[SEQ_HEADER] = str(self.seq)
        response[RENDERED_HEADER] = str(self.rendered_ms)
        response.shared_render = self  # the middleware's work on it is done once: derived()
        return response

    def derived(self, name: str, content: bytes, make: Callable[[bytes], bytes]) -> bytes:
        """``make(content)``, computed once per render whatever the number of watchers
        (``content`` is what a middleware got from this render: the same for every viewer;
        checked, so a changed input is never answered with an old output)."""
        with self._deriving:
            memo = self._derived.get(name)
            if memo is None or (memo[0] is not content and memo[0] != content):
                memo = self._derived[name] = (content, make(content))
            return memo[1]

    def keep_replays(self, replays: dict[str, Replay]) -> None:
        """Keep the answers as they left (the first kept stay), and wake who waits for them."""
        with self._deriving:
            for coding, replay in replays.items():
                self.replays.setdefault(coding, replay)
            listeners, self._replay_listeners = self._replay_listeners, []
        for listener in listeners:
            listener()

    def when_replayed(self, callback: Callable[[], None]) -> bool:
        """Call ``callback`` once the answers are kept; False (never called) if they already are."""
        with self._deriving:
            if self.replays:
                return False
            self._replay_listeners.append(callback)
            return True

    def compressed(self, content: bytes) -> bytes:
        """``content`` gzipped (collabadmin/fragment_gzip.py), once per render."""
        return self.derived("gzip", content, lambda text: gzip.compress(text, compresslevel=GZIP_LEVEL, mtime=0))


@dataclass
class _Slot:
    latest: Render | None = None
    rendering: bool = False
    renders: int = 0  # how many times this key was rendered (tests)
    waiters: int = 0
    history: deque[live_blocks.Base] = field(default_factory=lambda: deque(maxlen=HISTORY))
    # Called (from the rendering thread) when the render under way ends: the fast path's
    # waiters, which wait on the event loop rather than on a thread of the pool.
    listeners: list[Callable[[], None]] = field(default_factory=list)


class SharedRenders:
    """The newest render of each key, and at most one render of a key at a time."""

    def __init__(self, max_keys: int = MAX_KEYS) -> None:
        self._changed = threading.Condition(threading.Lock())
        self._slots: OrderedDict[Key, _Slot] = OrderedDict()
        self._max_keys = max_keys

    def clear(self) -> None:
        with self._changed:
            self._slots.clear()

    def renders(self, key: Key) -> int:
        with self._changed:
            slot = self._slots.get(key)
            return slot.renders if slot else 0

    def _slot(self, key: Key) -> _Slot:
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = _Slot()
            idle = [k for k, s in self._slots.items() if not s.rendering and not s.waiters]
            for old in idle[: max(0, len(self._slots) - self._max_keys)]:
                del self._slots[old]
        self._slots.move_to_end(key)
        return slot

    def serving(self, key: Key, wanted: int) -> Render | None:
        """The newest render of ``key`` if it serves ``wanted``, without waiting or rendering."""
        with self._changed:
            slot = self._slots.get(key)
            latest = slot.latest if slot else None
            return latest if latest is not None and latest.serves(wanted) else None

    def held(self, key: Key, version: str) -> live_blocks.Base | None:
        """The blocks of the render of ``key`` named ``version`` (``X-Live-Base``), if still
        held; None for no name (a page showing its own first render)."""
        if not version:
            return None
        with self._changed:
            slot = self._slots.get(key)
            return next((base for base in slot.history if base.version == version), None) if slot else None

    def when_rendered(self, key: Key, callback: Callable[[], None]) -> bool:
        """Call ``callback`` when the render of ``key`` under way ends; False (and never
        called) when none is under way."""
        with self._changed:
            slot = self._slots.get(key)
            if slot is None or not slot.rendering:
                return False
            slot.listeners.append(callback)
            return True

    def get(self, key: Key, wanted: int | None, render: Callable[[], HttpResponse]) -> Render | HttpResponse:
        """A render of ``key`` reflecting at least ``wanted`` (None: a recent one): shared,
        or made now (single flight). A response that is not a plain 200 (a redirect, an
        error) is returned as it is and never shared."""
        deadline = time.monotonic() + WAIT_SECONDS
        with self._changed:
            slot = self._slot(key)
            while True:
                latest = slot.latest
                if latest is not None and latest.serves(wanted):
                    return latest
                if not slot.rendering:
                    slot.rendering = True
                    break
                # Under way: it serves us if new enough, else one of us renders after it.
                slot.waiters += 1
                waited = self._changed.wait(timeout=max(0.0, deadline - time.monotonic()))
                slot.waiters -= 1
                if not waited and time.monotonic() >= deadline:
                    logger.warning("live fragment %s: render took over %s s; rendering alone", key[0], WAIT_SECONDS)
                    return render()
        return self._render(slot, render)

    def _render(self, slot: _Slot, render: Callable[[], HttpResponse]) -> Render | HttpResponse:
        made: Render | None = None
        try:
            try:
                # Read before the queries: every change numbered up to here is in the render.
                seq = live.current_sequence()
                started_ms, started = time.time_ns() // 1_000_000, time.monotonic()
            except Exception:  # Redis gone meanwhile: this one is not shared.
                logger.warning("live fragment rendered unshared: no sequence number", exc_info=True)
                return render()
            response = render()
            if response.status_code != 200 or response.streaming:
                return response
            # Cleaned here, not only on the way out (collabadmin/bidi.py): a block may later
            # leave alone, in a delta.
            blocks = live_blocks.numbered(without_controls(response.content))
            made = Render(
                seq=seq,
                rendered_ms=started_ms,
                born=started,
                content=blocks.content,
                content_type=response["Content-Type"],
                blocks=blocks.blocks,
            )
            return made
        finally:
            with self._changed:
                slot.rendering = False
                if made is not None:
                    slot.renders += 1
                    slot.history.append(made.base)
                    if slot.latest is None or made.seq >= slot.latest.seq:
                        slot.latest = made
                self._changed.notify_all()
                listeners, slot.listeners = slot.listeners, []
            for listener in listeners:
                listener()


shared_renders = SharedRenders()

SERVED_KEY = "collabadmin.shared_render"  # in the ASGI scope of a request answered from a render


@dataclass(frozen=True)
class Served:
    """A request answered from a shared render, as the fast path learns of it."""

    render: Render
    key: Key
    session_key: str


def shared_fragment(is_fragment: Callable[[HttpRequest], bool]) -> Callable:
    """Serve the view's live fragment from :data:`shared_renders` when ``is_fragment``
    says the request asks for it (the page itself is rendered per request: it has the
    user's menus, messages and forms). Put it under the view's access check."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not is_fragment(request):
                return view(request, *args, **kwargs)
            render = lambda: view(request, *args, **kwargs)  # noqa: E731
            key = render_key(request)
            answer = shared_renders.get(key, wanted_seq(request), render)
            if not isinstance(answer, Render):
                return answer
            # For the fast path in front of the thread pool: this viewer's next requests
            # for the view may be answered from the render without coming here.
            scope = request.META.get("asgi.scope")
            if scope is not None and request.session.session_key:
                scope[SERVED_KEY] = Served(answer, key, request.session.session_key)
            # The page holds an earlier render of this view: only the blocks it lacks.
            base = shared_renders.held(key, request.headers.get(live_blocks.BASE_HEADER, "")[:64])
            if answer.keeps_any(base):
                return answer.delta_response(base)
            response = answer.response()
            response.render_key = key  # for a push of this render (console/pushed_fragments.py)
            return response

        wrapper.shares_renders = True  # type: ignore[attr-defined]  (a page of it may be pushed)
        return wrapper

    return decorator
