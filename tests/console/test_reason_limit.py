"""A reason longer than the audit keeps is refused with a clear message, never cut (issue 15,
point 7): on every page action (the browser's ``maxlength`` is easily bypassed), in every
service that takes one, and in the API."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from configsync.services.sync import sync_start
from failover.choices import AuditAction, PeerKind, SyncRunState
from failover.models import AuditEntry, FailoverEvent, Peer, Policy, SyncRun
from failover.services.maintenance import peer_set_maintenance
from failover.services.policy import policy_update
from failover.services.switchover import link_switchover
from sessions.choices import AgentState, EndReason, LogoutReason, SessionState
from sessions.models import Agent, CollaborationSession
from sessions.services.lifecycle import agent_logout, session_end
from tests.desktop.conftest import logged_in, routed_session
from tests.factories import SyncRunFactory

pytestmark = pytest.mark.django_db

LIMIT = 300
TOO_LONG = "Because " + "x" * (LIMIT + 1 - len("Because "))
REFUSAL = f"the reason is {LIMIT + 1} characters long; at most {LIMIT} are kept. Shorten it."


@pytest.fixture
def session(agent):
    return routed_session(logged_in(agent), caller_name="Grace Hopper")


def actions(mb_pair, agent, session, server) -> dict[str, tuple[str, dict]]:
    link, primary, _ = mb_pair
    run = SyncRunFactory(server=server, state=SyncRunState.PLANNED, plan=[])
    return {
        "switchover": (f"/console/links/{link.pk}/switchover/", {}),
        "maintenance": (f"/console/peers/{primary.pk}/maintenance/", {"on": "1"}),
        "session end": (f"/console/sessions/{session.pk}/end/", {}),
        "agent log-out": (f"/console/agents/{agent.pk}/logout/", {}),
        "sync": ("/console/sync/apply/", {"run": run.pk, "do": "sync"}),
    }


def test_every_page_action_refuses_a_reason_over_the_limit_and_does_nothing(admin_client, mb_pair, agent, session):
    events = FailoverEvent.objects.count()
    for name, (url, fields) in actions(mb_pair, agent, session, mb_pair[0].server).items():
        response = admin_client.post(url, {**fields, "reason": TOO_LONG}, follow=True)

        assert response.status_code == 200, name
        assert REFUSAL in response.content.decode(), name
    assert not AuditEntry.objects.filter(reason__startswith="Because").exists()
    assert FailoverEvent.objects.count() == events
    assert not Peer.objects.filter(in_maintenance=True).exists()
    session.refresh_from_db()
    assert session.state == SessionState.ACTIVE
    assert Agent.objects.get(pk=agent.pk).state == AgentState.NOT_READY
    assert SyncRun.objects.get().state == SyncRunState.PLANNED


def test_a_reason_at_the_limit_is_kept_whole(admin_client, mb_pair, agent, session):
    at_limit = "y" * LIMIT
    url, _ = actions(mb_pair, agent, session, mb_pair[0].server)["agent log-out"]

    admin_client.post(url, {"reason": at_limit}, follow=True)

    entry = AuditEntry.objects.get(action=AuditAction.AGENT_LOGGED_OUT)
    assert entry.reason == at_limit  # was "admin_forced: " + the reason, cut to 300
    assert entry.after["logout_reason"] == LogoutReason.ADMIN_FORCED


def test_every_service_that_takes_a_reason_refuses_one_over_the_limit(admin_user, mb_pair, agent, session):
    link, primary, _ = mb_pair
    run = SyncRunFactory(server=link.server, state=SyncRunState.PLANNED, plan=[])
    audited = AuditEntry.objects.count()
    calls = {
        "link_switchover": lambda: link_switchover(link_id=link.pk, actor=admin_user, reason=TOO_LONG),
        "peer_set_maintenance": lambda: peer_set_maintenance(
            peer_id=primary.pk, on=True, actor=admin_user, reason=TOO_LONG
        ),
        "policy_update": lambda: policy_update(actor=admin_user, reason=TOO_LONG, changes={"rise": 3}),
        "session_end": lambda: session_end(
            session_id=session.pk, actor=admin_user, reason=EndReason.ADMIN_ENDED, note=TOO_LONG
        ),
        "agent_logout": lambda: agent_logout(
            agent_id=agent.pk, actor=admin_user, reason=LogoutReason.ADMIN_FORCED, note=TOO_LONG
        ),
        "sync_start": lambda: sync_start(run_id=run.pk, actor=admin_user, reason=TOO_LONG),
    }
    for name, call in calls.items():
        with pytest.raises(ValidationError) as refused:
            call()
        assert refused.value.message_dict["reason"] == [REFUSAL[0].upper() + REFUSAL[1:]], name
    assert AuditEntry.objects.count() == audited
    assert Policy.current().rise == 2
    assert not Peer.objects.filter(kind=PeerKind.MEDIA_BLENDER, in_maintenance=True).exists()
    assert CollaborationSession.objects.get(pk=session.pk).state == SessionState.ACTIVE


def test_the_api_refuses_a_reason_over_the_limit_naming_the_field(admin_api, mb_pair, session):
    link, primary, _ = mb_pair
    audited = AuditEntry.objects.count()
    requests = [
        ("post", f"/api/v1/links/{link.pk}/switchover/", {}),
        ("post", f"/api/v1/peers/{primary.pk}/maintenance/", {"on": True}),
        ("patch", "/api/v1/policy/", {"rise": 3}),
        ("post", f"/api/v1/sessions/{session.pk}/end/", {}),
    ]
    for method, url, body in requests:
        response = getattr(admin_api, method)(url, {**body, "reason": TOO_LONG}, format="json")

        assert response.status_code == 400, url
        assert list(response.json()) == ["reason"], url
    assert AuditEntry.objects.count() == audited
