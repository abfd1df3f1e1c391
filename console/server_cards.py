"""The overview's server cards: what each shows (:class:`ServerView`), rendered once per
change of that.

Why: one overview refresh at 1,000 servers cost 68 ms of CPU, over half of it Django's
template engine walking the page's 24 server cards (207 of its 249 KB: links, peers and
every action button with its dialog's texts); a failover changes one or two of them
(docs/performance.md, issue 18). So each card is rendered alone
(``console/_server_card.html``) and kept, keyed by everything that can make two renders
of it differ:

* **what it shows**: every stored field of the server, its links and its peers, the
  silence in force on it (annotated by the overview's query) and, while it drains, its
  open sessions. The card's template reads nothing else, and every property it uses
  (``display_state``, ``is_eligible``, ``is_draining``...) is computed from those fields;
  a field added to a model is in the key by itself.
* **who looks**: the reader's access class (``console.live_fragments.access_class``: a
  card shows only the buttons its reader may use), time zone and language (the ``when``
  filter renders times in them).

Nothing in a card is relative to now, so a kept card is as good as a new one for as long
as its key holds. Kept per process in a size-bounded local-memory cache
(``CACHES["server_cards"]``, Django's own LRU backend), never shared between nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.context_processors import PermWrapper
from django.template.loader import get_template
from django.utils.safestring import SafeString

from console.kept_html import kept_html, kept_key, stored
from console.live_fragments import access_class
from failover.choices import LinkState, PeerKind
from failover.models import Link, Peer, Server
from sessions.choices import SessionState

CACHE_ALIAS = "server_cards"
TEMPLATE = "console/_server_card.html"


@dataclass
class LinkView:
    link: Link
    peers: list[Peer]
    active: Peer | None = None
    target: Peer | None = None

    @property
    def busy(self) -> bool:
        return self.link.state == LinkState.SWITCHING


@dataclass
class ServerView:
    server: Server
    links: list[LinkView] = field(default_factory=list)
    # Only counted for a draining server: how much is left before it may be restarted.
    open_sessions: int | None = None
    html: str = ""  # the card as the reader sees it (with_cards)

    @property
    def safe_to_restart(self) -> bool:
        return self.server.is_draining and self.open_sessions == 0


def server_view(server: Server) -> ServerView:
    by_kind: dict[str, list[Peer]] = {}
    for peer in server.peers.all():
        by_kind.setdefault(peer.kind, []).append(peer)
    entry = ServerView(server)
    if server.is_draining:
        entry.open_sessions = server.sessions.exclude(state=SessionState.ENDED).count()
    # Media Blender first: the pair the sessions follow.
    for link in sorted(server.links.all(), key=lambda link: link.kind != PeerKind.MEDIA_BLENDER):
        peers = by_kind.get(link.kind, [])
        active = next((peer for peer in peers if peer.is_connected), None)
        # The peer the service switches to by default: the other one (the first when none is connected).
        target = next((peer for peer in peers if active is None or peer.pk != active.pk), None)
        entry.links.append(LinkView(link, peers, active, target))
    return entry


def shown_values(entry: ServerView) -> tuple[Any, ...]:
    """Everything of ``entry`` the card's template can show (see the module's doc)."""
    server = entry.server
    return (
        stored(server),
        getattr(server, "silenced_until", None),
        getattr(server, "silence_reason", None),
        entry.open_sessions,
        tuple((stored(item.link), tuple(stored(peer) for peer in item.peers)) for item in entry.links),
    )


def card_key(entry: ServerView, reader_class: str) -> str:
    """The cache key of ``entry``'s card for a reader of ``reader_class`` in the active zone
    and language."""
    return kept_key("card", shown_values(entry), reader_class)


def card_html(entry: ServerView, user: Any, reader_class: str) -> SafeString:
    """``entry``'s card as ``user`` (of ``reader_class``) sees it: kept, or rendered now and kept."""
    render = lambda: get_template(TEMPLATE).render({"entry": entry, "perms": PermWrapper(user)})  # noqa: E731
    return kept_html(CACHE_ALIAS, card_key(entry, reader_class), render)


def with_cards(entries: list[ServerView], user: Any) -> list[ServerView]:
    """Each entry with its card (``entry.html``) for ``user``."""
    reader_class = access_class(user)
    for entry in entries:
        entry.html = card_html(entry, user, reader_class)
    return entries
