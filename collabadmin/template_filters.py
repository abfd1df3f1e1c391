"""Template filters every template has without ``{% load %}`` (``TEMPLATES`` builtins)."""

from __future__ import annotations

import functools
from datetime import UTC, datetime

from django import template
from django.utils import timezone, translation
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.safestring import SafeString

from console.live_fragments import NOT_IN_KEY

register = template.Library()


@register.filter(expects_localtime=False)
def when(value: datetime | None) -> SafeString | str:
    """``<time datetime="ISO in UTC">2026-12-03 14:05:09 CET</time>``: the one format of a
    time, in the viewer's zone (``collabadmin/timezones.py``); "" for no time."""
    if not isinstance(value, datetime):
        return ""
    if timezone.is_naive(value):
        value = timezone.make_aware(value, UTC)
    return _when(value.astimezone(UTC), timezone.get_current_timezone_name(), translation.get_language())


# The same times are shown again and again (a live page re-renders its 50 rows several
# times a second): formatting them was a fifth of the sessions page's render (cProfile,
# 1,000 servers). Keyed by everything the text depends on: the instant, the zone, the
# language (the format).
@functools.lru_cache(maxsize=8192)
def _when(value: datetime, zone: str, language: str | None) -> SafeString:
    shown = date_format(timezone.localtime(value), "DATETIME_FORMAT")
    return format_html('<time datetime="{}">{}</time>', value.isoformat(), shown)


@register.simple_tag(takes_context=True)
def page_url(context: template.Context, param: str, number: int) -> str:
    """``?<param>=<number>`` with the page's other query parameters (its filters), without
    ``fragment``: one pager template for lists paged by ``page`` or by another parameter
    (the timeline's audit list, ``audit_page``), where ``{% querystring %}`` needs the
    parameter's name written in the template."""
    query = context["request"].GET.copy()
    query[param] = number
    for name in NOT_IN_KEY:  # ?fragment=1 and the live refresh's sequence number
        query.pop(name, None)
    return f"?{query.urlencode()}"
