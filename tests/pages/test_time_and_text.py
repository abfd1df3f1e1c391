"""Text and time on every desktop (issue 15, point 11).

One time format everywhere, in the viewer's zone with the zone shown: the console said
"14:20:30", the Agent desktop "2:20:30 PM", the caller's page "13:20 UTC" and the Django
admin "Jan. 15, 2026, 1:20 p.m." for the same instant. Bidirectional control characters in
names and reasons reordered what pages showed. Audit values named rows by id ("server:
1 → routing-b").
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.test import Client
from django.utils import timezone, translation

from collabadmin.bidi import CONTROLS
from collabadmin.template_filters import when
from failover.choices import AuditAction
from failover.models import AuditEntry
from sessions.choices import AgentState, EndReason
from sessions.models import CollaborationSession
from sessions.services.lifecycle import session_end
from tests.desktop.conftest import logged_in, routed_session

pytestmark = pytest.mark.django_db

ENDED_AT = datetime(2026, 1, 15, 13, 20, 30, tzinfo=UTC)
EVIL = "Ada\u202eecalpeR\u202c Lovelace\u2066\u200f"


@pytest.fixture
def ended(agent, admin_user):
    session = routed_session(logged_in(agent, AgentState.READY), caller_name="Grace Hopper", topic="Billing")
    session_end(session_id=session.pk, actor=admin_user, reason=EndReason.ADMIN_ENDED, note="closed by phone")
    CollaborationSession.objects.filter(pk=session.pk).update(ended_at=ENDED_AT)
    return session


def pages_showing(session, admin_user, agent) -> dict[str, str]:
    """The same ended session on each desktop: console, Agent desktop, caller, Django admin."""
    staff, agent_client = Client(), Client()
    staff.force_login(admin_user)
    agent_client.force_login(agent.user)
    return {
        "console": (staff, "/console/sessions/"),
        "agent desktop": (agent_client, f"/agent/sessions/{session.pk}/"),
        "caller": (Client(), f"/request/{session.pk}/"),
        "django admin": (staff, "/admin/collab_sessions/collaborationsession/"),
    }


@pytest.mark.parametrize(
    ("zone", "shown"),
    [
        (None, "2026-01-15 13:20:30 UTC"),  # no cookie yet: TIME_ZONE, the zone still shown
        ("Europe/Berlin", "2026-01-15 14:20:30 CET"),
        ("America/New_York", "2026-01-15 08:20:30 EST"),
        ("Europe%2FBerlin", "2026-01-15 14:20:30 CET"),  # percent-encoded by some cookie writers
        ("../../etc/passwd", "2026-01-15 13:20:30 UTC"),  # not a zone name: ignored
    ],
)
def test_every_desktop_shows_a_time_in_one_format_in_the_viewers_zone(ended, admin_user, agent, zone, shown):
    for name, (client, path) in pages_showing(ended, admin_user, agent).items():
        if zone is not None:
            client.cookies["tz"] = zone
        html = client.get(path).content.decode()

        assert f'<time datetime="2026-01-15T13:20:30+00:00">{shown}</time>' in html or shown in html, name
        for other in ("p.m.", " PM", "13:20 UTC", "Jan. 15"):
            assert other not in html, (name, other)


def test_the_zone_of_one_request_does_not_leak_into_the_next(ended, admin_user, agent):
    berlin, plain = Client(), Client()
    for client in (berlin, plain):
        client.force_login(admin_user)
    berlin.cookies["tz"] = "Europe/Berlin"

    assert "14:20:30 CET" in berlin.get("/console/sessions/").content.decode()
    assert "13:20:30 UTC" in plain.get("/console/sessions/").content.decode()


def test_bidirectional_controls_never_reach_a_page(agent, admin_user):
    session = routed_session(logged_in(agent, AgentState.READY), caller_name=EVIL, topic=f"Refund {EVIL}")
    session_end(session_id=session.pk, actor=admin_user, reason=EndReason.ADMIN_ENDED, note=f"asked by {EVIL}")
    staff, agent_client = Client(), Client()
    staff.force_login(admin_user)
    agent_client.force_login(agent.user)
    pages = [
        (staff, "/console/sessions/"),
        (staff, "/console/sessions/?fragment=1"),
        (staff, "/console/timeline/"),
        (staff, f"/admin/collab_sessions/collaborationsession/{session.pk}/change/"),
        (agent_client, f"/agent/sessions/{session.pk}/"),
    ]
    assert CollaborationSession.objects.get(pk=session.pk).caller_name == EVIL  # stored as given
    for client, path in pages:
        response = client.get(path)
        html = response.content.decode()

        assert response.status_code == 200, path
        assert "Adaecalpe" in html, path  # the name is there...
        assert not any(control in html for control in CONTROLS), path  # ...without its controls
        assert int(response.get("Content-Length", len(response.content))) == len(response.content)
    # The caller's page, while the session is open, shows the topic the caller typed.
    session = routed_session(agent, caller_name=EVIL, topic=f"Refund {EVIL}")
    html = Client().get(f"/request/{session.pk}/").content.decode()
    assert "Refund Adaecalpe" in html
    assert not any(control in html for control in CONTROLS)


def test_audit_values_name_servers_and_agents(admin_client, installation):
    html = admin_client.get("/console/timeline/", {"action": AuditAction.SESSION_ADOPTED}).content.decode()
    assert '<span class="change-before">routing-b</span> → <span class="change-after">routing-a</span>' in html

    routed = admin_client.get("/console/timeline/", {"action": AuditAction.SESSION_ROUTED}).content.decode()
    assert '<span class="change-after">Maria Lopez</span>' in routed
    entry = AuditEntry.objects.filter(action=AuditAction.SESSION_ROUTED).first()
    assert isinstance(entry.after["agent"], int)  # stored as the id, shown as the name


def test_a_time_formatted_once_is_formatted_again_in_another_zone_and_language():
    """``when`` remembers what it formatted (a live page shows the same times again and
    again): the zone and the language are part of what it remembers."""
    instant = datetime(2026, 12, 3, 13, 5, 9, tzinfo=UTC)
    with timezone.override("Europe/Paris"):
        paris = when(instant)
        assert when(instant) == paris
    with timezone.override("Asia/Tokyo"):
        tokyo = when(instant)
    with timezone.override("Europe/Paris"), translation.override("de"):
        german = when(instant)

    assert "14:05:09 CET" in paris
    assert "22:05:09 JST" in tokyo
    assert 'datetime="2026-12-03T13:05:09+00:00"' in paris
    assert german.startswith('<time datetime="2026-12-03T13:05:09+00:00">')
