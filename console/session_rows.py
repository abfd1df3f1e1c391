"""The sessions page's rows, each rendered once per change of what it shows.

Why: a render of the sessions page's live fragment (50 rows) cost ~30 ms at 10,000
sessions, over half of it Django's template engine walking the rows; under 50 session
changes a second its 50 watchers wait for those renders one after the other, so their
length is most of the time between a change and the pages showing it
(docs/performance.md, issue 18). A change touches one or two rows.

Each row (``console/_session_row.html``) is kept (``CACHES["session_rows"]``, per process,
console/kept_html.py), keyed by what it shows: every stored field of the session and of
the rows it names (server, skill group, agent and its user, who ended it), the wait as
the row writes it (``still_waiting``, ``waited``: a waiting caller's row changes once a
second, so it is kept for that second), and the reader's access class (the End button),
zone and language.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.context_processors import PermWrapper
from django.template.loader import get_template
from django.utils.safestring import SafeString

from console.kept_html import kept_html, kept_key, stored
from console.live_fragments import access_class
from sessions.models import CollaborationSession

CACHE_ALIAS = "session_rows"
TEMPLATE = "console/_session_row.html"


def shown_values(session: CollaborationSession) -> tuple[Any, ...]:
    """Everything of ``session`` the row's template can show (see the module's doc)."""
    agent = session.agent
    return (
        stored(session),
        stored(session.server),
        stored(session.skill_group),
        stored(agent),
        stored(agent.user) if agent is not None else None,
        stored(session.ended_by),
        session.still_waiting,
        session.waited,
    )


def row_html(session: CollaborationSession, user: Any, reader_class: str) -> SafeString:
    """``session``'s row as ``user`` (of ``reader_class``) sees it: kept, or rendered now and kept."""
    render = lambda: get_template(TEMPLATE).render({"session": session, "perms": PermWrapper(user)}).strip()  # noqa: E731
    return kept_html(CACHE_ALIAS, kept_key("row", shown_values(session), reader_class), render)


def with_rows(sessions: list[CollaborationSession], user: Any) -> list[CollaborationSession]:
    """Each session with its row (``session.row_html``) for ``user``; the waits must be set."""
    reader_class = access_class(user)
    for session in sessions:
        session.row_html = row_html(session, user, reader_class)
    return sessions
