"""The Administration desktop's actions: drain a server or take it out of drain, switch a
pair over, maintenance on/off, acknowledge an alert, silence a server's alerts for a while
(and end that early).

Each asks for a reason (the confirmation dialog), calls the failover service (which locks,
audits and publishes), and goes back to the page it came from with a message saying what
happened or why it was refused.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.views.decorators.http import require_POST

from common.roles import DRAIN_SERVERS, HANDLE_ALERTS, SET_PEER_MAINTENANCE, SWITCH_OVER_LINKS
from console.pages import read_reason, reason_refusal, redirect_back, requires_permission
from failover.models import Alert, Link, Peer, Server
from failover.services.alert_actions import alert_acknowledge, server_silence_end, server_silence_start
from failover.services.drain import MAX_DEADLINE_MINUTES, server_drain, server_undrain
from failover.services.maintenance import peer_set_maintenance
from failover.services.switchover import SwitchoverRefused, link_switchover


def _refusal_text(error: ValidationError) -> str:
    return " ".join(str(message) for message in error.messages)


def _expected_epoch(request: HttpRequest) -> int | None:
    raw = request.POST.get("expected_epoch", "")
    return int(raw) if raw.isdigit() else None


@requires_permission(SWITCH_OVER_LINKS)
@require_POST
def link_switchover_view(request: HttpRequest, link_id: int) -> HttpResponse:
    link = get_object_or_404(Link.objects.select_related("server"), pk=link_id)
    label = f"{link.server.name} {link.get_kind_display()} link"
    reason = read_reason(request)
    if refusal := reason_refusal(reason):
        messages.error(request, f"Switch-over of the {label} not done: {refusal}")
        return redirect_back(request)
    try:
        result = link_switchover(
            link_id=link.pk, actor=request.user, reason=reason, expected_epoch=_expected_epoch(request)
        )
    except SwitchoverRefused as error:
        messages.error(request, f"Switch-over of the {label} refused: {_refusal_text(error)}")
        return redirect_back(request)
    if result.outcome == "stale":
        messages.warning(
            request,
            f"The {label} changed before your request arrived (now epoch {result.link.epoch}); "
            "nothing was done. Check its state and try again.",
        )
    elif result.changed and result.event is not None and result.event.to_peer_id:
        target = Peer.objects.values_list("name", flat=True).get(pk=result.event.to_peer_id)
        messages.success(request, f"The {label} switched over to {target} (epoch {result.link.epoch}).")
    else:
        messages.info(request, f"The {label} did not change.")
    return redirect_back(request)


@requires_permission(SET_PEER_MAINTENANCE)
@require_POST
def peer_maintenance_view(request: HttpRequest, peer_id: int) -> HttpResponse:
    peer = get_object_or_404(Peer, pk=peer_id)
    on = request.POST.get("on") == "1"
    reason = read_reason(request)
    verb = "Maintenance of" if on else "End of maintenance of"
    if refusal := reason_refusal(reason):
        messages.error(request, f"{verb} {peer.name} not done: {refusal}")
        return redirect_back(request)
    try:
        result = peer_set_maintenance(peer_id=peer.pk, on=on, actor=request.user, reason=reason)
    except SwitchoverRefused as error:
        messages.error(request, f"{verb} {peer.name} refused: {_refusal_text(error)}")
        return redirect_back(request)
    text = f"{peer.name} is in maintenance." if on else f"{peer.name} is out of maintenance."
    if result is not None and result.changed:
        text += f" Its link is now {result.link.get_state_display().lower()} (epoch {result.link.epoch})."
    messages.success(request, text)
    return redirect_back(request)


def _deadline_minutes(request: HttpRequest) -> int | None:
    """The optional deadline field; ``ValidationError`` when it is not a whole number."""
    raw = (request.POST.get("deadline_minutes") or "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise ValidationError(f"the deadline is a number of minutes (1 to {MAX_DEADLINE_MINUTES}).")
    return int(raw)


# --- Alerts: acknowledge one, silence a server's for a while -----------------------------------


@requires_permission(HANDLE_ALERTS)
@require_POST
def alert_acknowledge_view(request: HttpRequest, alert_id: int) -> HttpResponse:
    """The dialog's reason is the acknowledgement's note: what the person is doing about it."""
    alert = get_object_or_404(Alert.objects.select_related("server"), pk=alert_id)
    label = f"{alert.server.name}: {alert.get_kind_display().lower()}"
    note = read_reason(request)
    if refusal := reason_refusal(note):
        messages.error(request, f"Acknowledgement of {label} not done: {refusal.replace('reason', 'note')}")
        return redirect_back(request)
    try:
        alert_acknowledge(alert_id=alert.pk, actor=request.user, note=note)
    except ValidationError as error:
        messages.error(request, f"Acknowledgement of {label} refused: {_refusal_text(error)}")
        return redirect_back(request)
    messages.success(request, f"Acknowledged {label}.")
    return redirect_back(request)


def _minutes(request: HttpRequest) -> int | None:
    raw = (request.POST.get("minutes") or "").strip()
    return int(raw) if raw.isascii() and raw.isdigit() else None


@requires_permission(HANDLE_ALERTS)
@require_POST
def server_silence_view(request: HttpRequest, server_id: int) -> HttpResponse:
    server = get_object_or_404(Server, pk=server_id)
    reason, minutes = read_reason(request), _minutes(request)
    if refusal := reason_refusal(reason):
        messages.error(request, f"Silence of {server.name} not done: {refusal}")
        return redirect_back(request)
    if minutes is None:
        messages.error(request, f"Silence of {server.name} not done: give the minutes as a whole number.")
        return redirect_back(request)
    try:
        silence = server_silence_start(server_id=server.pk, minutes=minutes, actor=request.user, reason=reason)
    except ValidationError as error:
        messages.error(request, f"Silence of {server.name} not done: {_refusal_text(error)}")
        return redirect_back(request)
    until = timezone.localtime(silence.ends_at)
    messages.success(request, f"{server.name}'s alerts are silenced until {until:%Y-%m-%d %H:%M}.")
    return redirect_back(request)


@requires_permission(HANDLE_ALERTS)
@require_POST
def server_unsilence_view(request: HttpRequest, server_id: int) -> HttpResponse:
    server = get_object_or_404(Server, pk=server_id)
    reason = read_reason(request)
    if refusal := reason_refusal(reason):
        messages.error(request, f"End of {server.name}'s silence not done: {refusal}")
        return redirect_back(request)
    try:
        server_silence_end(server_id=server.pk, actor=request.user, reason=reason)
    except ValidationError as error:
        messages.error(request, f"End of {server.name}'s silence refused: {_refusal_text(error)}")
        return redirect_back(request)
    messages.success(request, f"{server.name}'s alerts are no longer silenced.")
    return redirect_back(request)


@requires_permission(DRAIN_SERVERS)
@require_POST
def server_drain_view(request: HttpRequest, server_id: int) -> HttpResponse:
    """Drain a server (``on=1``) or take it out of drain, with a reason (and a deadline)."""
    server = get_object_or_404(Server, pk=server_id)
    on = request.POST.get("on") == "1"
    reason = read_reason(request)
    verb = "Drain of" if on else "End of the drain of"
    if refusal := reason_refusal(reason):
        messages.error(request, f"{verb} {server.name} not done: {refusal}")
        return redirect_back(request)
    try:
        if on:
            server = server_drain(
                server_id=server.pk, actor=request.user, reason=reason, deadline_minutes=_deadline_minutes(request)
            )
        else:
            server = server_undrain(server_id=server.pk, actor=request.user, reason=reason)
    except ValidationError as error:
        messages.error(request, f"{verb} {server.name} refused: {_refusal_text(error)}")
        return redirect_back(request)
    if not on:
        messages.success(request, f"{server.name} takes new sessions again.")
        return redirect_back(request)
    deadline = f" Sessions still open at {server.drain_deadline:%H:%M} UTC end then." if server.drain_deadline else ""
    messages.success(
        request,
        f"{server.name} is draining: no new sessions, its queue handed on, its agents asked to finish.{deadline} "
        "The overview says when it is empty and safe to restart.",
    )
    return redirect_back(request)
