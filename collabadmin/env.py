"""Strict readers of environment variables for settings.py (12-factor configuration).

A value that cannot be parsed stops start-up with a message naming the variable,
instead of silently falling back to a default.
"""

from __future__ import annotations

import os

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean: use one of 1/0, true/false, yes/no, on/off.")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer.") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}.")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    """A comma-separated list; blank items are dropped."""
    raw = os.environ.get(name)
    if raw is None:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_rate(name: str, default: str) -> tuple[int, int] | None:
    """A rate limit ``"N/S"``: at most N requests per S seconds; ``"0"`` or empty turns it off
    (None). Anything else stops start-up with a message naming the variable."""
    raw = os.environ.get(name, default).strip()
    if raw in {"", "0"}:
        return None
    count, _, seconds = raw.partition("/")
    try:
        limit, window = int(count), int(seconds)
    except ValueError:
        raise ImproperlyConfigured(
            f'{name}={raw!r} is not a rate: write "N/S" (N requests per S seconds), or "0" to turn it off.'
        ) from None
    if limit < 1 or window < 1:
        raise ImproperlyConfigured(f"{name}={raw!r}: both numbers of N/S must be at least 1 (or use 0 to turn it off).")
    return limit, window
