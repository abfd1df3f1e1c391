"""A live refresh carries only the blocks the page lacks (console/live_blocks.py, issue 18).

First the rule on bytes (what the page rebuilds is exactly the new render, whatever
changed), then through the node's real HTTP stack (fast path, Django, Redis, database):
a page naming the render it shows gets the overview or the sessions page with only the
changed server cards / rows in full, and anything the node cannot vouch for gets the whole
fragment. The browser's side (console.js putting its own blocks back) is in
tests/console/test_overview_browser.py.
"""

from __future__ import annotations

import gzip
import re

import pytest
from django.db import DEFAULT_DB_ALIAS, connections

from common import live
from console import live_blocks
from console.live_fragments import shared_renders
from failover.choices import Health, PeerKind, PeerPriority
from failover.models import Peer
from tests.console.test_fragment_fast_path import answered_here, header
from tests.console.test_live_fragments import new_event
from tests.factories import PeerFactory, ServerFactory, SessionFactory, StaffFactory
from tests.websockets import session_cookie

OVERVIEW = "/partials/overview/"
SESSIONS = "/console/sessions/?fragment=1"
KEEP = re.compile(rb'<template data-keep="([0-9a-f]+)"></template>')


HELD = re.compile(rb'<(\w+) data-block="([0-9a-f]+)".*?</\1>', re.DOTALL)


def rebuilt(answer: bytes, shown: bytes) -> bytes:
    """What console.js makes of a delta: each kept block is the page's own copy (the element
    of ``shown``, the answer the page applied last, that bears the block's name)."""
    held = {match.group(2): match.group(0) for match in HELD.finditer(shown)}
    return KEEP.sub(lambda match: held[match.group(1)], answer)


def kept_ids(answer: bytes, shown: bytes) -> list[str]:
    """The ``id`` of each element a delta keeps, as the page it was made for holds it (the
    overview's server cards are ``server-<pk>``; its charts and alerts are blocks too)."""
    held = {match.group(2): match.group(0) for match in HELD.finditer(shown)}
    ids = (re.search(rb' id="([^"]+)"', held[name].split(b">", 1)[0]) for name in KEEP.findall(answer))
    return [found.group(1).decode() if found else "" for found in ids]


def page(*rows: str) -> bytes:
    body = "".join(f"<!--block-->\n  <tr id='r-{row}'><td>{row}</td></tr>\n<!--/block-->" for row in rows)
    return f"<p>head</p><table><tbody>{body}</tbody></table><p>tail</p>".encode()


def test_equal_blocks_have_equal_names_and_a_changed_one_a_new_name() -> None:
    before = live_blocks.numbered(page("a", "b", "c"))
    after = live_blocks.numbered(page("a", "B", "c"))

    assert [name for name, _, _ in before.blocks][0::2] == [name for name, _, _ in after.blocks][0::2]
    assert before.blocks[1][0] != after.blocks[1][0]
    assert b"<!--block-->" not in after.content
    assert b"<!--/block-->" not in after.content
    for name, start, end in after.blocks:
        assert after.content[start:end].startswith(f'<tr data-block="{name}"'.encode())
        assert after.content[start:end].endswith(b"</tr>")


@pytest.mark.parametrize(
    ("shown", "new"),
    [
        (("a", "b", "c"), ("a", "B", "c")),  # one changed
        (("a", "b", "c"), ("x", "a", "b", "c")),  # one added on top, the others moved down
        (("a", "b", "c"), ("c", "a")),  # one gone, the order changed
        (("a", "b", "c"), ("a", "b", "c")),  # nothing changed
        (("a", "a", "b"), ("b", "a")),  # two equal blocks
        ((), ("a",)),  # nothing to keep
    ],
)
def test_the_page_rebuilds_exactly_the_new_render(shown, new) -> None:
    shown_render = live_blocks.numbered(page(*shown))
    new_render = live_blocks.numbered(page(*new))

    answer = live_blocks.delta(new_render, shown_render.names)

    assert rebuilt(answer, shown_render.content) == new_render.content
    kept = len(KEEP.findall(answer))
    assert kept == sum(1 for row in new if row in shown)


def test_a_block_the_page_does_not_hold_goes_in_full() -> None:
    new_render = live_blocks.numbered(page("a", "b"))
    assert live_blocks.delta(new_render, frozenset({"0123456789abcdef"})) == new_render.content


# --- Through the node -------------------------------------------------------------------------


@pytest.fixture
def node(monkeypatch, transactional_db):
    # As tests/console/test_fragment_fast_path.py: the pool's threads close their connection.
    monkeypatch.setitem(connections.settings[DEFAULT_DB_ALIAS], "CONN_MAX_AGE", 0)
    shared_renders.clear()
    yield
    shared_renders.clear()


def installation(servers: int = 3) -> list:
    made = []
    for n in range(servers):
        server = ServerFactory(name=f"routing-{n}")
        for priority in (PeerPriority.PRIMARY, PeerPriority.SECONDARY):
            PeerFactory(server=server, kind=PeerKind.MEDIA_BLENDER, priority=priority, name=f"mb-{n}-{priority}")
        made.append(server)
    return made


def fetch(path: str, cookie: str, base: str | None = None, **options) -> tuple[dict, bool]:
    seq = live.current_sequence()
    extra = [(live_blocks.BASE_HEADER.lower().encode(), base.encode())] if base else []
    return answered_here(f"{path}{'&' if '?' in path else '?'}live_seq={seq}", cookie, extra_headers=extra, **options)


def version(answer: dict) -> str:
    return f"{header(answer, 'x-live-seq')}.{header(answer, 'x-live-rendered')}"


@pytest.mark.usefixtures("node")
@pytest.mark.parametrize(
    ("alone", "gzip_ok"),
    [(True, False), (True, True), (False, False), (False, True)],
    ids=["own render", "own render gzip", "another's render", "another's render gzip"],
)
def test_after_a_failover_the_overview_sends_only_the_card_that_changed(alone: bool, gzip_ok: bool) -> None:
    """Alone, the page's fetch makes the new render (through Django); else another
    watcher's did and the fast path answers: the same delta either way."""
    servers = installation()
    cookie = session_cookie(StaffFactory())
    shown, _ = fetch(OVERVIEW, cookie)  # the page's first refresh: whole, through Django
    fetch(OVERVIEW, cookie)  # now known to the fast path

    Peer.objects.filter(server=servers[1], priority=PeerPriority.SECONDARY).update(health=Health.DOWN)
    new_event()
    if not alone:
        fetch(OVERVIEW, cookie)
    answer, here = fetch(OVERVIEW, cookie, base=version(shown), gzip_ok=gzip_ok)
    whole, _ = fetch(OVERVIEW, cookie)

    assert here is not alone
    assert header(answer, "x-live-delta") == version(shown)
    assert int(header(answer, "content-length")) == len(answer["body"])
    if gzip_ok:
        assert header(answer, "content-encoding") == "gzip"
        answer["body"] = gzip.decompress(answer["body"])
    kept = [name for name in kept_ids(answer["body"], shown["body"]) if name.startswith("server-")]
    assert sorted(kept) == sorted(f"server-{server.pk}" for server in (servers[0], servers[2]))  # unchanged
    assert rebuilt(answer["body"], shown["body"]) == whole["body"]
    cards = {server.pk: f'id="server-{server.pk}"'.encode() in answer["body"] for server in servers}
    assert cards == {servers[0].pk: False, servers[1].pk: True, servers[2].pk: False}


@pytest.mark.usefixtures("node")
def test_a_session_change_sends_the_sessions_page_only_that_row() -> None:
    server = installation(1)[0]
    sessions = [SessionFactory(server=server, caller_name=f"Caller {n}") for n in range(20)]
    cookie = session_cookie(StaffFactory())
    shown, _ = fetch(SESSIONS, cookie)
    fetch(SESSIONS, cookie)

    type(sessions[0]).objects.filter(pk=sessions[7].pk).update(caller_name="Renamed\u202e Caller")
    new_event()
    fetch(SESSIONS, cookie)
    answer, here = fetch(SESSIONS, cookie, base=version(shown), gzip_ok=True)
    whole, _ = fetch(SESSIONS, cookie)

    assert here
    assert header(answer, "content-encoding") == "gzip"
    body = gzip.decompress(answer["body"])
    assert b"Renamed Caller" in body  # a block alone is as clean as the whole (collabadmin/bidi.py)
    # Waiting rows show how long they waited, to the second: those may differ too.
    assert len(KEEP.findall(body)) >= 10
    assert rebuilt(body, shown["body"]) == whole["body"]


@pytest.mark.usefixtures("node")
@pytest.mark.parametrize("base", ["", "1.2", "not a version"])
def test_a_render_the_node_does_not_hold_gets_the_whole_fragment(base: str) -> None:
    installation(2)
    cookie = session_cookie(StaffFactory())
    fetch(OVERVIEW, cookie)
    first, _ = fetch(OVERVIEW, cookie)

    answer, here = fetch(OVERVIEW, cookie, base=base or None)

    assert here
    assert header(answer, "x-live-delta") is None
    assert answer["body"] == first["body"]


@pytest.mark.usefixtures("node")
def test_a_render_of_another_view_is_never_a_base() -> None:
    """A base is looked up among the renders of the request's own key (path, filters,
    access, zone): another viewer's render cannot be named to learn what it held."""
    installation(2)
    cookie = session_cookie(StaffFactory())
    other, _ = fetch(OVERVIEW + "?show=problems", cookie)
    fetch(OVERVIEW, cookie)

    answer, here = fetch(OVERVIEW, cookie, base=version(other))

    assert here
    assert header(answer, "x-live-delta") is None


@pytest.mark.usefixtures("node")
def test_a_page_many_renders_behind_still_gets_only_what_changed() -> None:
    """An overview page refreshes on a failover or at its resync, while its view is
    rendered for other pages every few seconds: the render it shows is many renders old."""
    servers = installation()
    cookie = session_cookie(StaffFactory())
    shown, _ = fetch(OVERVIEW, cookie)
    for _ in range(8):  # other pages' refreshes
        new_event()
        fetch(OVERVIEW, cookie)
    Peer.objects.filter(server=servers[0], priority=PeerPriority.PRIMARY).update(health=Health.DOWN)
    new_event()

    answer, _ = fetch(OVERVIEW, cookie, base=version(shown))

    assert header(answer, "x-live-delta") == version(shown)
    kept = [name for name in kept_ids(answer["body"], shown["body"]) if name.startswith("server-")]
    assert sorted(kept) == sorted(f"server-{server.pk}" for server in servers[1:])


@pytest.mark.usefixtures("node")
def test_a_page_that_holds_no_block_of_the_new_render_gets_it_whole() -> None:
    """An empty sessions list has no rows to keep: the answer is the whole, not a "delta"."""
    installation(1)
    cookie = session_cookie(StaffFactory())
    shown, _ = fetch(SESSIONS, cookie)
    new_event()
    fetch(SESSIONS, cookie)

    answer, here = fetch(SESSIONS, cookie, base=version(shown))

    assert here
    assert header(answer, "x-live-delta") is None
    assert b"data-keep" not in answer["body"]
