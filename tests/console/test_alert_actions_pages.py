"""Acknowledge and silence on the overview (issue 19, point 2): the buttons' endpoints with
CSRF enforced, staff only, what the page then shows and counts, and the audit history."""

from __future__ import annotations

import re

import pytest

from common.actors import MONITOR
from failover.choices import AlertKind, AlertSeverity, AuditAction
from failover.models import Alert, AuditEntry, ServerSilence
from failover.services.alert_actions import alert_acknowledge, alert_is_silenced, server_silence_start
from failover.services.alerts import alert_raise
from tests.console.test_overview_pages import csrf_client
from tests.factories import ServerFactory

pytestmark = pytest.mark.django_db


def raise_alert(server, kind: AlertKind = AlertKind.CONFIG_OUT_OF_SYNC) -> Alert:
    return alert_raise(
        server=server,
        kind=kind,
        message=f"{kind.label} on {server.name}",
        severity=AlertSeverity.WARNING,
        actor=MONITOR,
    )


def count(html: str, name: str) -> int:
    match = re.search(rf'data-count="{name}"><span class="num">(\d+)</span>', html)
    assert match, f"no {name} count on the page"
    return int(match.group(1))


def test_the_buttons_are_on_the_overview(admin_client, server):
    alert = raise_alert(server)

    html = admin_client.get("/").content.decode()

    assert f'data-action="/console/alerts/{alert.pk}/acknowledge/"' in html
    assert f'data-action="/console/servers/{server.pk}/silence/"' in html
    assert 'data-minutes="60"' in html
    assert 'name="minutes"' in html  # the dialog's field for a silence


def test_acknowledge_through_the_page_with_csrf(admin_user, server):
    alert = raise_alert(server)
    client, token = csrf_client(admin_user)

    without_token = client.post(f"/console/alerts/{alert.pk}/acknowledge/", {"reason": "on it"})
    response = client.post(
        f"/console/alerts/{alert.pk}/acknowledge/",
        {"reason": "restarting the AW", "csrfmiddlewaretoken": token, "next": "/"},
        follow=True,
    )

    assert without_token.status_code == 403
    html = response.content.decode()
    assert "Acknowledged routing-a: configuration may be out of sync." in html
    assert "data-alert-acknowledged" in html
    assert "restarting the AW" in html
    alert.refresh_from_db()
    assert alert.acknowledged_by == admin_user
    assert alert.acknowledge_note == "restarting the AW"
    entry = AuditEntry.objects.get(action=AuditAction.ALERT_ACKNOWLEDGED)
    assert (entry.actor, entry.reason) == (admin_user, "restarting the AW")


def test_acknowledge_without_a_note_or_twice_is_refused_with_a_message(admin_user, server):
    alert = raise_alert(server)
    client, token = csrf_client(admin_user)
    url = f"/console/alerts/{alert.pk}/acknowledge/"

    blank = client.post(url, {"reason": "  ", "csrfmiddlewaretoken": token}, follow=True)
    client.post(url, {"reason": "first", "csrfmiddlewaretoken": token})
    twice = client.post(url, {"reason": "second", "csrfmiddlewaretoken": token}, follow=True)

    assert "not done: give a note." in blank.content.decode()
    assert "refused: Already acknowledged by user:admin" in twice.content.decode()
    assert Alert.objects.get(pk=alert.pk).acknowledge_note == "first"


def test_silence_and_end_it_through_the_page_with_csrf(admin_user, server):
    alert = raise_alert(server)
    client, token = csrf_client(admin_user)

    silenced = client.post(
        f"/console/servers/{server.pk}/silence/",
        {"minutes": "45", "reason": "AW upgrade", "csrfmiddlewaretoken": token},
        follow=True,
    )

    html = silenced.content.decode()
    assert "routing-a&#x27;s alerts are silenced until" in html
    assert "data-silenced-until" in html
    assert "data-alert-silenced" in html
    assert alert_is_silenced(alert)
    assert AuditEntry.objects.get(action=AuditAction.SERVER_SILENCED).reason == "AW upgrade"

    ended = client.post(
        f"/console/servers/{server.pk}/unsilence/", {"reason": "done", "csrfmiddlewaretoken": token}, follow=True
    )

    assert "routing-a&#x27;s alerts are no longer silenced." in ended.content.decode()
    assert not alert_is_silenced(alert)
    assert AuditEntry.objects.get(action=AuditAction.SERVER_UNSILENCED).reason == "done"


@pytest.mark.parametrize("minutes", ["0", "10081", "-3", "abc", ""])
def test_a_silence_with_bad_minutes_is_refused_with_a_message(admin_user, server, minutes):
    client, token = csrf_client(admin_user)

    response = client.post(
        f"/console/servers/{server.pk}/silence/",
        {"minutes": minutes, "reason": "x", "csrfmiddlewaretoken": token},
        follow=True,
    )

    assert "Silence of routing-a not done" in response.content.decode()
    assert not ServerSilence.objects.exists()


def test_agents_and_visitors_cannot_act(agent_client, anonymous_client, server):
    alert = raise_alert(server)

    for client in (agent_client, anonymous_client):
        for url, data in (
            (f"/console/alerts/{alert.pk}/acknowledge/", {"reason": "x"}),
            (f"/console/servers/{server.pk}/silence/", {"minutes": "5", "reason": "x"}),
            (f"/console/servers/{server.pk}/unsilence/", {"reason": "x"}),
        ):
            response = client.post(url, data)
            if client is agent_client:
                assert response.status_code == 403  # signed in, no role
            else:
                assert response.status_code == 302
                assert response.url.startswith("/login/")

    assert not Alert.objects.get(pk=alert.pk).is_acknowledged
    assert not ServerSilence.objects.exists()


def test_the_overview_counts_unhandled_acknowledged_and_silenced_alerts(admin_client, admin_user, server):
    other = ServerFactory(name="routing-b")
    quiet = ServerFactory(name="routing-c")
    raise_alert(server)  # unhandled
    alert_acknowledge(alert_id=raise_alert(other).pk, actor=admin_user, note="on it")
    raise_alert(other, AlertKind.LINK_DOWN)  # unhandled
    # Silenced counts first, acknowledged or not.
    alert_acknowledge(alert_id=raise_alert(quiet).pk, actor=admin_user, note="on it")
    raise_alert(quiet, AlertKind.LINK_DOWN)
    server_silence_start(server_id=quiet.pk, minutes=30, actor=admin_user, reason="maintenance")

    html = admin_client.get("/").content.decode()

    assert (count(html, "alerts-unhandled"), count(html, "alerts-acknowledged"), count(html, "alerts-silenced")) == (
        2,
        1,
        2,
    )
    assert "by admin" in html  # who acknowledged
