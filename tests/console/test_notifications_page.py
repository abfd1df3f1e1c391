"""The notifications page and API (issue 19, point 3): deliveries listed and filtered,
"send test" with CSRF, staff only, audited; which channels an alert goes to; the retry
schedule lasts 24 h. The sending itself, with real processes: tests/failover/test_notifications.py."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client

from common.actors import MONITOR
from failover.choices import AlertKind, AlertSeverity, AuditAction, NotificationEvent, NotificationKind
from failover.models import AuditEntry, NotificationChannel, NotificationDelivery
from failover.services.alert_actions import server_silence_start
from failover.services.alerts import alert_clear, alert_raise
from failover.services.notifications import max_attempts, retry_delay
from tests.console.test_overview_pages import csrf_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def hook(db) -> NotificationChannel:
    return NotificationChannel.objects.create(name="ops hook", kind=NotificationKind.WEBHOOK, url="http://127.0.0.1:9/")


def test_retries_last_at_least_24_hours_with_waits_below_the_visibility_time_out():
    attempts = max_attempts()
    waits = [retry_delay(n) for n in range(1, attempts)]
    assert sum(waits) >= 24 * 3600
    assert sum(waits[:-1]) < 24 * 3600  # no more attempts than that
    assert waits[0] == settings.NOTIFY_RETRY_BASE_SECONDS
    assert waits == sorted(waits)
    assert max(waits) == settings.NOTIFY_RETRY_MAX_SECONDS < settings.CELERY_VISIBILITY_TIMEOUT


def test_an_alert_goes_to_the_channels_that_want_its_kind_and_severity_and_not_while_silenced(server, hook):
    NotificationChannel.objects.create(
        name="critical mail", kind=NotificationKind.EMAIL, email_to="a@example.com", min_severity=AlertSeverity.CRITICAL
    )
    NotificationChannel.objects.create(
        name="sync only", kind=NotificationKind.EMAIL, email_to="b@example.com", alert_kinds=["config_out_of_sync"]
    )
    NotificationChannel.objects.create(name="off", kind=NotificationKind.EMAIL, email_to="c@example.com", enabled=False)

    warning = alert_raise(
        server=server, kind=AlertKind.SERVER_DEGRADED, message="slow", severity=AlertSeverity.WARNING, actor=MONITOR
    )
    alert_raise(  # raised again: refreshed, no new notification
        server=server, kind=AlertKind.SERVER_DEGRADED, message="slower", severity=AlertSeverity.WARNING, actor=MONITOR
    )
    critical = alert_raise(
        server=server, kind=AlertKind.SERVER_FAILED, message="down", severity=AlertSeverity.CRITICAL, actor=MONITOR
    )
    alert_clear(server=server, kind=AlertKind.SERVER_FAILED, actor=MONITOR, reason="back")

    def sent(alert) -> set[tuple[str, str]]:
        return set(NotificationDelivery.objects.filter(alert=alert).values_list("channel__name", "event"))

    assert sent(warning) == {("ops hook", "raised")}
    assert sent(critical) == {
        (name, event) for name in ("ops hook", "critical mail") for event in ("raised", "cleared")
    }

    server_silence_start(server_id=server.pk, minutes=10, actor=MONITOR, reason="maintenance")
    silenced = alert_raise(
        server=server,
        kind=AlertKind.SERVER_FAILED,
        message="down again",
        severity=AlertSeverity.CRITICAL,
        actor=MONITOR,
    )
    alert_clear(server=server, kind=AlertKind.SERVER_FAILED, actor=MONITOR, reason="back")
    assert sent(silenced) == set()


def test_the_page_lists_and_filters_deliveries(admin_client, server, hook):
    alert = alert_raise(
        server=server, kind=AlertKind.SERVER_FAILED, message="down", severity=AlertSeverity.CRITICAL, actor=MONITOR
    )
    NotificationDelivery.objects.filter(alert=alert).update(attempts=3, last_error="HTTP 503 Service Unavailable")
    delivered = NotificationDelivery.objects.create(channel=hook, event=NotificationEvent.TEST)
    NotificationDelivery.objects.filter(pk=delivered.pk).update(delivered_at=delivered.created_at, attempts=1)

    html = admin_client.get("/console/alerts/notifications/").content.decode()
    assert "HTTP 503 Service Unavailable" in html
    assert f'data-action="/console/alerts/notifications/channels/{hook.pk}/test/"' in html
    pending = admin_client.get("/console/alerts/notifications/", {"state": "pending", "channel": hook.pk}).content
    assert b"HTTP 503" in pending
    assert str(delivered.delivery_id).encode() not in pending
    only_delivered = admin_client.get("/console/alerts/notifications/", {"state": "delivered", "fragment": "1"})
    assert str(delivered.delivery_id).encode() in only_delivered.content
    assert b"HTTP 503" not in only_delivered.content


def test_send_test_from_the_page_needs_csrf_and_is_audited(admin_user, hook):
    client, token = csrf_client(admin_user)
    url = f"/console/alerts/notifications/channels/{hook.pk}/test/"

    assert client.post(url, {"reason": "new receiver"}).status_code == 403  # no CSRF token
    response = client.post(url, {"reason": "new receiver", "csrfmiddlewaretoken": token}, follow=True)

    delivery = NotificationDelivery.objects.get(channel=hook)
    assert delivery.event == NotificationEvent.TEST
    assert f"Test notification {delivery.delivery_id} queued" in response.content.decode()
    entry = AuditEntry.objects.get(action=AuditAction.NOTIFICATION_TEST)
    assert (entry.reason, entry.actor_name, entry.object_id) == (
        "new receiver",
        "user:" + admin_user.username,
        str(hook.pk),
    )


def test_the_page_and_the_test_are_staff_only(agent_client, hook):
    anonymous = Client()
    for client, refused in ((anonymous, 302), (agent_client, 403)):
        assert client.get("/console/alerts/notifications/").status_code == refused
        assert (
            client.post(f"/console/alerts/notifications/channels/{hook.pk}/test/", {"reason": "x"}).status_code
            == refused
        )
    assert not NotificationDelivery.objects.exists()


def test_the_api_lists_deliveries_and_sends_a_test(admin_api, agent_api, hook):
    response = admin_api.post(
        f"/api/v1/notification-channels/{hook.pk}/test/", {"note": "from a script"}, format="json"
    )
    assert response.status_code == 202
    assert response.json()["event"] == "test"
    listed = admin_api.get("/api/v1/notification-deliveries/", {"state": "pending", "channel": hook.pk}).json()
    assert [row["delivery_id"] for row in listed["results"]] == [response.json()["delivery_id"]]
    assert admin_api.get("/api/v1/notification-deliveries/", {"state": "delivered"}).json()["results"] == []
    assert admin_api.get("/api/v1/notification-deliveries/", {"state": "bogus"}).status_code == 400
    assert "secret" not in admin_api.get(f"/api/v1/notification-channels/{hook.pk}/").json()
    assert agent_api.get("/api/v1/notification-deliveries/").status_code == 403
    assert agent_api.post(f"/api/v1/notification-channels/{hook.pk}/test/", {"note": "x"}).status_code == 403

    hook.enabled = False
    hook.save()
    assert admin_api.post(f"/api/v1/notification-channels/{hook.pk}/test/", {"note": "x"}).status_code == 409
    assert AuditEntry.objects.filter(action=AuditAction.NOTIFICATION_TEST).count() == 1


def test_the_admin_action_sends_a_test_and_the_form_keeps_kinds(admin_client, hook):
    response = admin_client.post(
        "/admin/failover/notificationchannel/",
        {"action": "send_test", "_selected_action": [hook.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert NotificationDelivery.objects.filter(channel=hook, event=NotificationEvent.TEST).count() == 1
    assert AuditEntry.objects.get(action=AuditAction.NOTIFICATION_TEST).reason == "from the Django admin"

    response = admin_client.post(
        f"/admin/failover/notificationchannel/{hook.pk}/change/",
        {
            "name": "ops hook",
            "kind": "webhook",
            "enabled": "on",
            "url": "https://hooks.example.com/x",
            "secret": "s3cret",
            "email_to": "",
            "alert_kinds": ["link_down", "server_failed"],
            "min_severity": "critical",
            "reason": "Only the worst",
        },
    )
    assert response.status_code == 302
    hook.refresh_from_db()
    assert (hook.alert_kinds, hook.min_severity, hook.url) == (
        ["link_down", "server_failed"],
        "critical",
        "https://hooks.example.com/x",
    )
