"""The Administration desktop's notifications page (``/console/alerts/notifications/``).

The channels (configured in the Django admin) with a "Send test" action each, and every
delivery, newest first, 50 a page, filtered by channel and state: delivered, pending
(being retried) or failed (given up after 24 h). What each delivery says is in
``failover.services.notifications``.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET, require_POST

from common.roles import MANAGE_NOTIFICATIONS, VIEW_DESKTOP
from console.pages import paginate, read_reason, reason_refusal, redirect_back, render_console, requires_permission
from console.views.filters import choice_param, id_param
from failover.models import NotificationChannel, NotificationDelivery
from failover.services.notifications import notification_test

DELIVERY_STATES = [("delivered", "Delivered"), ("pending", "Pending (retrying)"), ("failed", "Failed (given up)")]
STATE_FILTERS = {
    "delivered": Q(delivered_at__isnull=False),
    "pending": Q(delivered_at__isnull=True, next_attempt_at__isnull=False),
    "failed": Q(delivered_at__isnull=True, next_attempt_at__isnull=True),
}


def delivery_rows(*, channel_id: int | None, state: str) -> QuerySet[NotificationDelivery]:
    rows = NotificationDelivery.objects.select_related("channel", "alert__server").order_by("-created_at", "-id")
    if channel_id is not None:
        rows = rows.filter(channel_id=channel_id)
    if state:
        rows = rows.filter(STATE_FILTERS[state])
    return rows


@requires_permission(VIEW_DESKTOP)
@require_GET
def notifications_page(request: HttpRequest) -> HttpResponse:
    filters = {"channel": id_param(request, "channel"), "state": choice_param(request, "state", STATE_FILTERS)}
    page = paginate(request, delivery_rows(channel_id=filters["channel"], state=filters["state"]))
    page.object_list = list(page.object_list)
    channels = list(NotificationChannel.objects.order_by("name"))
    context: dict[str, Any] = {
        "page": page,
        "filters": filters,
        "filtered": any(value not in ("", None) for value in filters.values()),
        "channels": channels,
        "state_options": DELIVERY_STATES,
    }
    return render_console(request, "console/notifications.html", "console/_notifications.html", context)


@requires_permission(MANAGE_NOTIFICATIONS)
@require_POST
def notification_test_view(request: HttpRequest, channel_id: int) -> HttpResponse:
    """The dialog's reason is the test's note, kept in the audit history."""
    channel = get_object_or_404(NotificationChannel, pk=channel_id)
    note = read_reason(request)
    if refusal := reason_refusal(note):
        messages.error(request, f"Test of {channel.name} not sent: {refusal}")
        return redirect_back(request, "console-notifications")
    try:
        delivery = notification_test(channel_id=channel.pk, actor=request.user, note=note)
    except ValidationError as error:
        messages.error(request, f"Test of {channel.name} not sent: {' '.join(error.messages)}")
        return redirect_back(request, "console-notifications")
    messages.success(request, f"Test notification {delivery.delivery_id} queued for {channel.name}.")
    return redirect_back(request, "console-notifications")
