"""The incident report: one failure (a link's peer that crashed or stalled, a server that
failed) and everything that followed, read from what the services recorded.

An incident is a ``FailoverEvent`` with ``failure`` set. Its report tells:

- when the failure began, was detected and the switch-over committed (the event's times);
- which sessions were queued, in transit and active at that moment (the ``IncidentSession``
  snapshot written in the failure's transaction) and what became of each, read from the
  session's row now: *kept* (still open where it was), *re-routed* (adopted by another
  server, routed again under the new Media Blender, or back in the queue) or *ended*, with
  the reason;
- the alerts raised on the server from the failure until the end of the incident's window;
- the administrators' actions on the server and what belongs to it within that window.

The window runs from the detection until the first of: the next incident on the same
server, the failure's resolution (the server recovered, the link restored) or
``ADMIN_WINDOW`` later. The notifications listed are the deliveries of the alerts listed
(raised and cleared), with their state: delivered, still being retried, or given up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.db.models import Case, Exists, OuterRef, Q, QuerySet, Subquery, Value, When
from django.db.models.functions import Replace
from django.utils import timezone

from common.actors import COMMAND
from common.roles import ROLES
from console.audit_scope import audit_about_server
from failover.choices import AlertKind, FailoverKind
from failover.models import Alert, AuditEntry, FailoverEvent, NotificationDelivery
from sessions.choices import ROUTED_STATES, SessionState
from sessions.models import CollaborationSession, IncidentSession

# How long after an incident the administrators' actions are counted as its follow-up when
# nothing ends the window sooner (the next incident, the resolution).
ADMIN_WINDOW = timedelta(hours=24)
# Alerts raised this long before the detection still belong to it: a link's alert is raised
# in the same transaction, but the failure's start (``failed_at``) may precede it.
ALERT_LEAD = timedelta(seconds=5)

KEPT, REROUTED, ENDED = "kept", "rerouted", "ended"
OUTCOMES = [(KEPT, "Kept"), (REROUTED, "Re-routed"), (ENDED, "Ended")]
OUTCOME_LABELS = dict(OUTCOMES)

# What resolves an incident of each kind (the same server, and the same link for a link's).
RESOLVED_BY = {
    FailoverKind.SERVER_FAILED: FailoverKind.SERVER_RECOVERED,
    FailoverKind.LINK_DOWN: FailoverKind.LINK_RESTORED,
}


def incident_rows() -> QuerySet[FailoverEvent]:
    """Every incident, newest first, with what a row shows (one query)."""
    return (
        FailoverEvent.objects.filter(failure=True)
        .select_related("server", "link", "from_peer", "to_peer", "actor")
        .order_by("-detected_at", "-id")
    )


# Alerts a failure raises in its own transaction: each links to its incident.
ALERTS_OF_FAILURES = (AlertKind.SERVER_FAILED, AlertKind.LINK_DOWN, AlertKind.REDUNDANCY_LOST)


def incident_of_alert() -> Subquery:
    """For an ``Alert`` queryset's ``annotate``: the id of the incident that raised the alert
    (the newest on its server detected at most ``ALERT_LEAD`` before it), for the alert kinds
    a failure raises; NULL otherwise. No query of its own."""
    incidents = FailoverEvent.objects.filter(
        failure=True,
        server_id=OuterRef("server_id"),
        detected_at__lte=OuterRef("raised_at"),
        detected_at__gte=OuterRef("raised_at") - ALERT_LEAD,
    ).order_by("-detected_at", "-id")
    return Subquery(incidents.values("pk")[:1])


def with_incidents(alerts: QuerySet[Alert]) -> QuerySet[Alert]:
    """``alerts`` with ``incident_id`` on each (None when no failure raised it)."""
    return alerts.annotate(incident_id=Case(When(kind__in=ALERTS_OF_FAILURES, then=incident_of_alert()), default=None))


@dataclass(frozen=True)
class SessionFate:
    """One session open at the incident: as it was then, and what became of it."""

    snapshot: IncidentSession
    session: CollaborationSession
    outcome: str
    detail: str

    @property
    def outcome_label(self) -> str:
        return OUTCOME_LABELS[self.outcome]


@dataclass(frozen=True)
class IncidentReport:
    event: FailoverEvent
    window_ends_at: datetime
    resolved_by: FailoverEvent | None
    next_incident: FailoverEvent | None
    sessions: list[SessionFate]
    alerts: list[Alert]
    notifications: list[NotificationDelivery]
    admin_actions: list[AuditEntry]

    def sessions_in(self, state: str) -> list[SessionFate]:
        return [fate for fate in self.sessions if fate.snapshot.state == state]

    @property
    def counts(self) -> dict[str, int]:
        """Sessions at the incident by state, and by outcome."""
        counts = {state: len(self.sessions_in(state)) for state in SessionState.values if state != SessionState.ENDED}
        for outcome, _ in OUTCOMES:
            counts[outcome] = sum(1 for fate in self.sessions if fate.outcome == outcome)
        return counts


def session_fate(snapshot: IncidentSession, session: CollaborationSession, event: FailoverEvent) -> SessionFate:
    """What became of a session open at ``event``, read from its row now."""
    agent = session.agent.display_name if session.agent_id and session.agent else ""
    if session.state == SessionState.ENDED:
        detail = session.get_end_reason_display() + (f": {session.end_note}" if session.end_note else "")
        return SessionFate(snapshot, session, ENDED, detail)
    now = session.get_state_display().lower() + (f" with {agent}" if agent else "")
    if session.server_id != event.server_id:
        return SessionFate(snapshot, session, REROUTED, f"adopted by {session.server.name}; {now}")
    routed_then = snapshot.state in ROUTED_STATES
    if routed_then and session.state == SessionState.QUEUED:
        return SessionFate(snapshot, session, REROUTED, "back in the queue")
    if routed_then and (session.agent_id != snapshot.agent_id or session.route_epoch != snapshot.route_epoch):
        return SessionFate(snapshot, session, REROUTED, f"routed again; {now}")
    return SessionFate(snapshot, session, KEPT, now)


def _fates(event: FailoverEvent) -> list[SessionFate]:
    snapshots = event.incident_sessions.select_related("session__server", "session__agent__user").order_by(
        "session__queued_at", "id"
    )
    return [session_fate(snapshot, snapshot.session, event) for snapshot in snapshots]


def _later(event: FailoverEvent) -> QuerySet[FailoverEvent]:
    return (
        FailoverEvent.objects.filter(server_id=event.server_id)
        .filter(Q(detected_at__gt=event.detected_at) | Q(detected_at=event.detected_at, pk__gt=event.pk))
        .select_related("server", "link")
        .order_by("detected_at", "id")
    )


def _resolution(event: FailoverEvent) -> FailoverEvent | None:
    resolving = RESOLVED_BY.get(event.kind)
    if resolving is None:
        return None
    later = _later(event).filter(kind=resolving)
    if event.link_id is not None:
        later = later.filter(link_id=event.link_id)
    return later.first()


def admin_actions(event: FailoverEvent, until: datetime) -> QuerySet[AuditEntry]:
    """What administrators (users with a role or superusers, or an operator's command) did
    about the server and what belongs to it, from the detection until ``until``, oldest first.
    A role's group, not its permissions: an agent or a script's account has none."""
    role_holders = get_user_model().groups.through.objects.filter(
        user_id=OuterRef("actor_id"), group__name__in=[role.group for role in ROLES]
    )
    return (
        AuditEntry.objects.alias(object_key=Replace("object_id", Value("-"), Value("")))
        .filter(audit_about_server(event.server_id))
        .filter(created_at__gte=event.detected_at, created_at__lt=until)
        .filter(Q(actor__is_superuser=True) | Exists(role_holders) | Q(actor_name=COMMAND))
        .order_by("created_at", "id")
    )


def alerts_raised(event: FailoverEvent, until: datetime) -> QuerySet[Alert]:
    start = (event.failed_at or event.detected_at) - ALERT_LEAD
    return (
        Alert.objects.filter(server_id=event.server_id, raised_at__gte=start, raised_at__lt=until)
        .select_related("link", "cleared_by")
        .order_by("raised_at", "id")
    )


def incident_report(event: FailoverEvent) -> IncidentReport:
    """The whole story of one incident; a dozen queries, whatever the history's length."""
    next_incident = _later(event).filter(failure=True).first()
    resolved_by = _resolution(event)
    ends = [event.detected_at + ADMIN_WINDOW, timezone.now() + timedelta(microseconds=1)]
    ends += [later.detected_at for later in (next_incident, resolved_by) if later is not None]
    until = min(ends)
    # The alerts of the failure itself are raised once its transaction is under way: never
    # before the window's end, even if the resolution came within the same second.
    alerts_until = max(until, event.completed_at or event.detected_at) + timedelta(microseconds=1)
    return IncidentReport(
        event=event,
        window_ends_at=until,
        resolved_by=resolved_by,
        next_incident=next_incident,
        sessions=_fates(event),
        alerts=(alerts := list(alerts_raised(event, alerts_until))),
        notifications=list(notifications_sent(alerts)),
        admin_actions=list(admin_actions(event, until)),
    )


def notifications_sent(alerts: list[Alert]) -> QuerySet[NotificationDelivery]:
    """The deliveries of ``alerts`` to the notification channels, oldest first."""
    return (
        NotificationDelivery.objects.filter(alert__in=[alert.pk for alert in alerts])
        .select_related("channel", "alert")
        .order_by("created_at", "id")
    )
