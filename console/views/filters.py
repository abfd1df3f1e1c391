"""What the session pages share: reading their GET filters and writing waiting times."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.http import HttpRequest

from failover.models import Server


def choice_param(request: HttpRequest, name: str, allowed: Iterable[str]) -> str:
    """``?name=`` when it is one of ``allowed``, else "" (no filter): a stale or edited URL
    shows everything rather than an error."""
    value = request.GET.get(name, "")
    return value if value in set(allowed) else ""


def id_param(request: HttpRequest, name: str) -> int | None:
    """``?name=`` as a row id, or None (no filter) when it is empty or not a number."""
    value = request.GET.get(name, "")
    return int(value) if value.isdigit() and len(value) < 19 else None


def server_options() -> list[tuple[int, str]]:
    """Every server as (id, name) for a filter's <select>: one query."""
    return list(Server.objects.order_by("name").values_list("id", "name"))


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max((end - start).total_seconds(), 0.0)


def duration_text(seconds: float | None) -> str:
    """A short, fixed-shape duration: ``42 s``, ``3 min 05 s``, ``2 h 03 min``, ``3 d 04 h``."""
    if seconds is None:
        return "—"
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours:02d} h"
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"
