"""What a notification says and how it leaves: the webhook's signed JSON, the e-mail.

A webhook POST carries the JSON body below with three headers: ``X-Collabadmin-Delivery``
(the delivery id, the same on every attempt: receivers de-duplicate on it),
``X-Collabadmin-Event`` (raised, cleared, test) and ``X-Collabadmin-Signature``
(``sha256=`` and the hex HMAC-SHA256 of the exact body bytes with the channel's secret).
The ``text`` field makes the body a Slack-compatible incoming-webhook message as is.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import urllib.error
import urllib.request
from datetime import datetime

from django.conf import settings
from django.core.mail import send_mail

from failover.choices import NotificationEvent, NotificationKind
from failover.models import NotificationChannel, NotificationDelivery

SIGNATURE_HEADER = "X-Collabadmin-Signature"
DELIVERY_HEADER = "X-Collabadmin-Delivery"
EVENT_HEADER = "X-Collabadmin-Event"


class DeliveryFailed(Exception):
    """The receiver did not take it (refused, unreachable, timed out): try again later."""


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def summary_line(delivery: NotificationDelivery) -> str:
    """One line for people: Slack's ``text``, the e-mail's subject."""
    alert = delivery.alert
    if alert is None:
        return f"[collabadmin] Test notification for channel {delivery.channel.name}"
    what = "RESOLVED" if delivery.event == NotificationEvent.CLEARED else alert.severity.upper()
    return f"[collabadmin] {what} {alert.server.name}: {alert.message}"


def payload(delivery: NotificationDelivery) -> dict:
    """The webhook's JSON body (also the e-mail's details)."""
    alert = delivery.alert
    body: dict = {
        "delivery_id": str(delivery.delivery_id),
        "event": delivery.event,
        "text": summary_line(delivery),
        "channel": delivery.channel.name,
        "created_at": _iso(delivery.created_at),
        "alert": None,
    }
    if alert is not None:
        body["text"] += f" <{settings.COLLABADMIN_SITE_URL}/|open the console>"
        body["alert"] = {
            "id": alert.pk,
            "kind": alert.kind,
            "kind_label": alert.get_kind_display(),
            "severity": alert.severity,
            "server": alert.server.name,
            "link": alert.link_id,
            "message": alert.message,
            "raised_at": _iso(alert.raised_at),
            "cleared_at": _iso(alert.cleared_at),
            "clear_reason": alert.clear_reason,
            "url": f"{settings.COLLABADMIN_SITE_URL}/api/v1/alerts/{alert.pk}/",
        }
    return body


def post_webhook(channel: NotificationChannel, delivery: NotificationDelivery) -> None:
    body = json.dumps(payload(delivery), separators=(",", ":")).encode()
    request = urllib.request.Request(  # noqa: S310 (the URL is an http(s) URLField set by an administrator)
        channel.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "collabadmin-notifications",
            DELIVERY_HEADER: str(delivery.delivery_id),
            EVENT_HEADER: delivery.event,
            SIGNATURE_HEADER: sign(channel.secret, body),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=settings.NOTIFY_HTTP_TIMEOUT_SECONDS) as response:  # noqa: S310
            response.read(1024)
    except urllib.error.HTTPError as error:  # any non-2xx answer
        raise DeliveryFailed(f"HTTP {error.code} {error.reason}") from error
    except (OSError, http.client.HTTPException, ValueError) as error:  # refused, reset, timed out, garbled
        raise DeliveryFailed(f"{type(error).__name__}: {error}") from error


def send_email(channel: NotificationChannel, delivery: NotificationDelivery) -> None:
    body = payload(delivery)
    alert = body["alert"] or {}
    lines = [body["text"], ""] + [f"{key}: {value}" for key, value in alert.items()]
    lines += ["", f"delivery id: {body['delivery_id']}"]
    try:
        send_mail(
            summary_line(delivery),
            "\n".join(lines),
            settings.DEFAULT_FROM_EMAIL,
            channel.recipients,
            fail_silently=False,
        )
    except (OSError, TimeoutError) as error:  # smtplib's errors are OSErrors
        raise DeliveryFailed(f"{type(error).__name__}: {error}") from error


def transmit(delivery: NotificationDelivery) -> None:
    """Send it once over its channel; ``DeliveryFailed`` when it did not get through."""
    channel = delivery.channel
    if channel.kind == NotificationKind.WEBHOOK:
        post_webhook(channel, delivery)
    else:
        send_email(channel, delivery)
