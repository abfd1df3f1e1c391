"""Pieces of a live fragment rendered once per change of what they show, and kept.

Used by the overview's server cards (console/server_cards.py) and the sessions page's rows
(console/session_rows.py): a live refresh renders the whole fragment, but an event changes
one card or one row of it, and walking the others through Django's template engine again
was most of a refresh's CPU (docs/performance.md, issue 18). Each piece is kept in a
size-bounded local-memory cache (Django's own LRU backend, one per kind of piece, per
process), keyed by a digest of everything that can make two renders of it differ: what it
shows (every stored field of the rows it reads: a field added to a model is in the key by
itself, plus whatever the caller computed for it) and who looks (the reader's access
class, time zone and language).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from django.core.cache import caches
from django.db.models import Model
from django.utils import timezone, translation
from django.utils.safestring import SafeString, mark_safe


def stored(row: Model | None) -> tuple[Any, ...] | None:
    """Every stored field of ``row`` (None for no row)."""
    if row is None:
        return None
    return tuple(getattr(row, field.attname) for field in row._meta.concrete_fields)


def kept_key(kind: str, shown: tuple[Any, ...], reader_class: str) -> str:
    """The cache key of a piece showing ``shown`` to a reader of ``reader_class`` in the
    active zone and language (a digest: the values themselves are long)."""
    text = repr((shown, reader_class, timezone.get_current_timezone_name(), translation.get_language()))
    return f"{kind}:" + hashlib.blake2b(text.encode(), digest_size=20).hexdigest()


def kept_html(alias: str, key: str, render: Callable[[], str]) -> SafeString:
    """The piece kept under ``key`` in cache ``alias``, or ``render()`` now and kept."""
    cache = caches[alias]
    html = cache.get(key)
    if html is None:
        html = render()
        cache.set(key, html)
    return mark_safe(html)  # noqa: S308 - a template's own output, escaped when it was rendered
