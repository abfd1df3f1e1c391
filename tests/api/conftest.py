"""Fixtures of the API tests: live updates recorded, a user who is neither staff nor agent."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from common import live
from tests.factories import UserFactory


@pytest.fixture
def live_events(monkeypatch) -> list[dict]:
    """Every live update, recorded instead of sent to Redis.

    ``publish`` defers the broadcast to the commit, so a test sees events only for what it
    ran inside ``django_capture_on_commit_callbacks(execute=True)``.
    """
    sent: list[dict] = []

    def record(event_type: str, data: dict, groups) -> None:
        sent.append({"type": event_type, "data": data, "groups": list(groups)})

    monkeypatch.setattr(live, "send_now", record)
    return sent


@pytest.fixture
def visitor_api(db) -> APIClient:
    """A logged-in user who is neither staff nor an agent (a script's account, say)."""
    client = APIClient()
    client.force_authenticate(UserFactory(username="visitor"))
    return client
