"""Waiting for something another process or thread will do, with a bound instead of a sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest


def wait_until(
    condition: Callable[[], Any], *, timeout: float, message: str, diagnostics: Callable[[], str] = lambda: ""
) -> Any:
    """Poll ``condition`` until it returns something truthy and return that; fail the test
    after ``timeout`` seconds, naming what was awaited (and ``diagnostics()``, e.g. logs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    pytest.fail(f"not within {timeout} s: {message}\n{diagnostics()}".rstrip())
