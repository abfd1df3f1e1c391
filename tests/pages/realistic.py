"""An installation that has been used: what the desktops show after a working day.

Every row is made by the product's own services (the ones the monitor, the Celery tasks,
the pages and the API call), against a real Admin Workstation simulator process for the
ICM, so the pages under test see the same shapes of data a real installation holds: every
kind of wizard run in every state (one interrupted by a switch-over of its Admin
Workstation link), verify, sync, stale and report runs, sessions in every state and with
every end reason, a failed server whose queue was adopted, manual, maintenance and
automatic switch-overs, a link that went down and came back, open and cleared alerts, a
policy change and the audit entries all of this wrote.

Used by the page test (``test_every_page.py``, Django's test client) and the accessibility
test (``test_accessibility_browser.py``, a real node and Chromium).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.utils import timezone

from configsync.services.sync import StalePlan, sync_apply, sync_plan_update, sync_start
from configsync.services.verify import verify_create, verify_run
from configsync.services.wizards import wizard_run_all, wizard_start
from failover.choices import Health, PeerKind, PeerPriority, SyncDirection, WizardKind
from failover.models import FailoverEvent, Link, NotificationChannel, Peer, Server, SyncRun, WizardRun
from failover.peering.client import call_sync
from failover.services.alert_actions import server_silence_start
from failover.services.drain import server_drain
from failover.services.health import peer_health_changed
from failover.services.maintenance import peer_set_maintenance
from failover.services.policy import policy_update
from failover.services.servers import server_health_changed
from failover.services.switchover import link_switchover
from sessions.choices import EndReason, LogoutReason
from sessions.models import Agent, CollaborationSession, SkillGroup
from sessions.services.lifecycle import agent_login, agent_logout, agent_set_ready, session_end
from sessions.services.phone_tracking import sessions_mark_phone_untracked
from sessions.services.requests import session_request
from sessions.services.routes import (
    session_confirm_routes,
    session_phone_hung_up,
    session_requeue,
    session_route_many,
)
from tests.factories import PASSWORD, AgentFactory, PeerFactory, ServerFactory, SkillGroupFactory, StaffFactory
from tests.peering.conftest import PeerProcess

GROUPS = (("5001", "Sales"), ("5002", "Support"), ("5003", "Billing"))
# A caller who typed bidirectional controls into the form: no page may show them.
SPOOFED_NAME = "Alan \u202egniruT\u202c \u2066Turing\u2069"
POLICY = "policy"
CALLER = "caller:web"


@dataclass
class Installation:
    """What the pages are opened with: the people and the rows worth naming."""

    admin: AbstractBaseUser
    agent: Agent  # logged in on routing-a, ready, with sessions in transit and active
    servers: dict[str, Server]
    sessions: dict[str, CollaborationSession] = field(default_factory=dict)
    wizard_runs: list[WizardRun] = field(default_factory=list)
    sync_runs: list[SyncRun] = field(default_factory=list)
    password: str = PASSWORD

    def incident_ids(self) -> list[int]:
        """The failures' events: each has an incident page."""
        return list(FailoverEvent.objects.filter(failure=True).order_by("pk").values_list("pk", flat=True))


def _aw(process: PeerProcess, op: str, **args: Any) -> dict[str, Any]:
    return call_sync(process.host, process.port, op, timeout=5, **args)


def _server(name: str, aw_port: int) -> Server:
    """A routing server, up, with both pairs; its primaries connected (as after start-up)."""
    server = ServerFactory(name=name, base_url=f"http://127.0.0.1:{8000 if name == 'routing-a' else 8001}")
    server_health_changed(server_id=server.pk, health=Health.UP, at=timezone.now())
    peers = [
        PeerFactory(server=server, kind=PeerKind.MEDIA_BLENDER, priority=PeerPriority.PRIMARY, name=f"{name}-mb-1"),
        PeerFactory(server=server, kind=PeerKind.MEDIA_BLENDER, priority=PeerPriority.SECONDARY, name=f"{name}-mb-2"),
        PeerFactory(
            server=server,
            kind=PeerKind.ADMIN_WORKSTATION,
            priority=PeerPriority.PRIMARY,
            name=f"{name}-aw-1",
            port=aw_port,
        ),
        PeerFactory(
            server=server, kind=PeerKind.ADMIN_WORKSTATION, priority=PeerPriority.SECONDARY, name=f"{name}-aw-2"
        ),
    ]
    for peer in peers:  # the monitor's first verdicts: the links connect their primaries
        peer_health_changed(peer_id=peer.pk, health=Health.UP, at=timezone.now())
    for icm_id, group in GROUPS:
        SkillGroupFactory(server=server, icm_id=icm_id if name == "routing-a" else f"{int(icm_id) + 100}", name=group)
    return server


def _agent(server: Server, username: str, first: str, last: str, icm_id: str, groups: list[str]) -> Agent:
    agent = AgentFactory(
        user__username=username, user__first_name=first, user__last_name=last, server=server, icm_id=icm_id
    )
    agent.skill_groups.set(SkillGroup.objects.filter(server=server, name__in=groups))
    Agent.objects.filter(pk=agent.pk).update(max_sessions=2)
    return agent


def _ready(agent: Agent) -> Agent:
    agent_login(agent_id=agent.pk, actor=agent.user)
    return agent_set_ready(agent_id=agent.pk, ready=True, actor=agent.user)


def _sync_runs(server: Server, admin: AbstractBaseUser, aw: PeerProcess) -> list[SyncRun]:
    """A sync with its report, an in-sync verify, a stale plan and a plan waiting for approval."""
    first = verify_run(server_id=server.pk, actor=admin)  # the agents are missing from the ICM
    rows = [{"id": row["id"], "approved": True, "direction": SyncDirection.TO_ICM} for row in first.plan]
    sync_plan_update(run_id=first.pk, rows=rows, actor=admin)
    sync_start(run_id=first.pk, actor=admin, reason="Agents created here before the ICM knew them")
    runs = [sync_apply(run_id=first.pk, actor=admin), verify_run(server_id=server.pk, actor=admin)]
    _aw(aw, "create_agent", agent_id="1099", name="Ravi Patel", enabled=True, skill_groups=["5003"])
    stale = verify_run(server_id=server.pk, actor=admin)
    sync_plan_update(run_id=stale.pk, rows=[{"id": stale.plan[0]["id"], "approved": True}], actor=admin)
    _aw(aw, "update_agent", agent_id="1099", name="Ravi Patel", enabled=False, skill_groups=["5003"])
    try:
        sync_start(run_id=stale.pk, actor=admin, reason="Take the ICM's new agent")
    except StalePlan:
        pass  # what the page shows: the plan was made from an older ICM version
    runs += [SyncRun.objects.get(pk=stale.pk), verify_run(server_id=server.pk, actor=admin)]
    return runs


def _wizard(server: Server, admin: AbstractBaseUser, kind: WizardKind, run: bool = True, **params: Any) -> WizardRun:
    reason = f"{kind.label} requested by the team lead"
    started = wizard_start(server_id=server.pk, kind=kind, params=params, actor=admin, reason=reason)
    return wizard_run_all(run_id=started.pk) if run else started


def _wizard_runs(server: Server, admin: AbstractBaseUser) -> list[WizardRun]:
    """Each kind completed, one failed in the ICM, one interrupted by an AW switch-over, one running."""
    runs = [
        _wizard(server, admin, WizardKind.ADD_SKILL_GROUP, skill_group_id="5004", name="Retention"),
        _wizard(
            server,
            admin,
            WizardKind.ADD_AGENT,
            agent_id="1007",
            name="Lucie Martin",
            username="lucie",
            skill_groups=["5001"],
            enabled=True,
        ),
        _wizard(server, admin, WizardKind.CHANGE_AGENT_SKILLS, agent_id="1007", skill_groups=["5001", "5004"]),
        _wizard(server, admin, WizardKind.REMOVE_AGENT, agent_id="1007"),
    ]
    interrupted = _wizard(
        server,
        admin,
        WizardKind.ADD_AGENT,
        run=False,
        agent_id="1008",
        name="Daniel Okafor",
        username="daniel",
        skill_groups=["5002"],
        enabled=True,
    )
    aw_link = Link.objects.get(server=server, kind=PeerKind.ADMIN_WORKSTATION)
    link_switchover(link_id=aw_link.pk, actor=admin, reason="Patching routing-a-aw-1 tonight")
    running = _wizard(
        server, admin, WizardKind.CHANGE_AGENT_SKILLS, run=False, agent_id="1002", skill_groups=["5001", "5002", "5003"]
    )
    return [*runs, WizardRun.objects.get(pk=interrupted.pk), running]


def _failed_wizard(server: Server, admin: AbstractBaseUser) -> WizardRun:
    """Skill groups the ICM has never heard of: the ICM refuses the membership step."""
    SkillGroupFactory(server=server, icm_id="5099", name="Local only")
    return _wizard(server, admin, WizardKind.CHANGE_AGENT_SKILLS, agent_id="1003", skill_groups=["5002", "5099"])


def _media_blender_history(server: Server, admin: AbstractBaseUser) -> None:
    """A manual switch-over, maintenance, a crash that takes the link down, and its return."""
    link = Link.objects.get(server=server, kind=PeerKind.MEDIA_BLENDER)
    mb1, mb2 = Peer.objects.filter(server=server, kind=PeerKind.MEDIA_BLENDER).order_by("priority")
    link_switchover(link_id=link.pk, actor=admin, reason="Move calls off mb-1 before its upgrade")
    peer_set_maintenance(peer_id=mb1.pk, on=True, actor=admin, reason="Upgrade of mb-1")
    now = timezone.now()
    peer_health_changed(
        peer_id=mb2.pk, health=Health.DOWN, at=now, failed_at=now - timedelta(milliseconds=40), error="reset"
    )
    peer_set_maintenance(peer_id=mb1.pk, on=False, actor=admin, reason="Upgrade done")
    peer_health_changed(peer_id=mb2.pk, health=Health.UP, at=timezone.now())


def _route(session: CollaborationSession, agent: Agent, *, confirm: bool) -> CollaborationSession:
    link = Link.objects.get(server=session.server, kind=PeerKind.MEDIA_BLENDER)
    session_route_many(server_id=session.server_id, routes=[(session.pk, agent.icm_id)], epoch=link.epoch)
    if confirm:
        peer = Peer.objects.get(server=session.server, kind=PeerKind.MEDIA_BLENDER, connection="connected")
        session_confirm_routes([(session.pk, agent.icm_id, peer.pk)])
    session.refresh_from_db()
    return session


def _ask(name: str, topic: str, group: str | None) -> CollaborationSession:
    return session_request(caller_name=name, caller_contact="", topic=topic, skill_group_name=group, actor=CALLER)


def _sessions(servers: dict[str, Server], admin: AbstractBaseUser, maria: Agent, kenji: Agent) -> dict[str, Any]:
    """Every session state and end reason; routing-b's sessions end or move with it."""
    found: dict[str, CollaborationSession] = {}
    ended = {  # reason: (by whom, their note, confirmed by the Media Blender first)
        EndReason.AGENT_ENDED: (maria.user, "", True),
        EndReason.ADMIN_ENDED: (admin, "Caller asked us by phone to close it", True),
        EndReason.CALLER_LEFT: (CALLER, "", True),
        EndReason.HANGUP_TIMEOUT: (POLICY, "caller hung up 120 s ago", True),
        EndReason.TRANSIT_FAILED: (POLICY, "route not confirmed within 10 s, 3 times", False),
        EndReason.PHONE_UNTRACKED: (POLICY, "phone state unknown for more than 600 s", True),
        EndReason.SERVER_MAINTENANCE: (POLICY, "server routing-a maintenance deadline passed (kernel update)", True),
    }
    for reason, (actor, note, confirm) in ended.items():
        session = _route(_ask(f"Caller {reason}", "Invoice 2024-117 looks wrong", "Sales"), maria, confirm=confirm)
        found[f"ended_{reason}"] = session_end(session_id=session.pk, actor=actor, reason=reason, note=note)
    # Set up through the connected MB, which is then switched away from: its phone state is
    # unknown (issue 20), next to sessions set up through the new MB.
    Agent.objects.filter(pk=maria.pk).update(max_sessions=3)
    untracked = _route(_ask("Dorothy Vaughan", "Was my call cut off?", "Sales"), maria, confirm=True)
    link = Link.objects.get(server=untracked.server, kind=PeerKind.MEDIA_BLENDER)
    link_switchover(link_id=link.pk, actor=admin, reason="Move the calls off the MB before its upgrade")
    sessions_mark_phone_untracked(link_id=link.pk)  # the task sent on the commit, run here
    found["phone_unknown"] = untracked
    found["active"] = _route(_ask("Ada Lovelace", "Cannot share my screen", "Sales"), maria, confirm=True)
    found["in_transit"] = _route(_ask("Grace Hopper", "Upgrade to the business plan", "Support"), maria, confirm=False)
    requeued = _route(_ask(SPOOFED_NAME, "Password reset\u200f", None), kenji, confirm=False)
    session_requeue(session_id=requeued.pk, actor=POLICY, reason="route not confirmed within 10 s")
    found["requeued"] = requeued
    hung_up = _route(_ask("Katherine Johnson", "Billing address", "Billing"), kenji, confirm=True)
    peer = Peer.objects.get(server=hung_up.server, kind=PeerKind.MEDIA_BLENDER, connection="connected")
    session_phone_hung_up(session_id=hung_up.pk, peer_id=peer.pk, agent_icm_id=kenji.icm_id)
    found["hung_up"] = hung_up
    found["queued"] = _ask("Hedy Lamarr", "New contract", "Support")
    for label, session in found.items():
        session.refresh_from_db()
        found[label] = session
    return found


def _fail_routing_b(server: Server, sofia: Agent, kenji: Agent) -> dict[str, CollaborationSession]:
    """routing-b takes callers, then its node dies: its active session ends, its queue moves.

    routing-a's Billing agent pauses meanwhile, so the director sends the Billing caller
    to routing-b (the less loaded of two servers with the skill group, neither free now)."""
    _ready(sofia)
    agent_set_ready(agent_id=kenji.pk, ready=False, actor=kenji.user)
    on_b = {
        "server_failed": _route(_ask("Margaret Hamilton", "Refund", "Sales"), sofia, confirm=True),
        "adopted": _ask("Barbara Liskov", "Change of address", "Billing"),
    }
    assert on_b["adopted"].server_id == server.pk, "the Billing caller should queue on routing-b"
    now = timezone.now()
    server_health_changed(
        server_id=server.pk, health=Health.DOWN, at=now, failed_at=now - timedelta(seconds=1), error="timeout"
    )
    for session in on_b.values():
        session.refresh_from_db()
    return on_b


def build(aw: PeerProcess) -> Installation:
    """The whole installation; ``aw`` is routing-a's primary Admin Workstation (a real
    simulator process, seeded here with routing-a's skill groups)."""
    for icm_id, name in GROUPS:
        _aw(aw, "create_skill_group", skill_group_id=icm_id, name=name)
    admin = StaffFactory(username="operator", first_name="Olivia", last_name="Admin")
    # Every alert below is notified: the notifications page has deliveries of each event.
    NotificationChannel.objects.create(name="On-call webhook", kind="webhook", url="http://127.0.0.1:9/hook")
    NotificationChannel.objects.create(name="Operations mail", kind="email", email_to="ops@example.com")
    servers = {"routing-a": _server("routing-a", aw.port)}
    maria = _agent(servers["routing-a"], "maria", "Maria", "Lopez", "1001", ["Sales", "Support"])
    kenji = _agent(servers["routing-a"], "kenji", "Kenji", "Watanabe", "1002", ["Billing", "Sales"])
    aisha = _agent(servers["routing-a"], "aisha", "Aisha", "Khan", "1003", ["Support"])
    for agent in (maria, kenji, aisha):
        agent.user.set_password(PASSWORD)
        agent.user.save(update_fields=["password"])
    installation = Installation(admin=admin, agent=maria, servers=servers)
    installation.sync_runs = _sync_runs(servers["routing-a"], admin, aw)
    installation.wizard_runs = [_failed_wizard(servers["routing-a"], admin), *_wizard_runs(servers["routing-a"], admin)]
    installation.sync_runs.append(verify_create(server_id=servers["routing-a"].pk, actor=admin))  # verifying now
    _media_blender_history(servers["routing-a"], admin)
    for agent in (maria, kenji):
        _ready(agent)
    agent_login(agent_id=aisha.pk, actor=aisha.user)
    agent_logout(agent_id=aisha.pk, actor=admin, reason=LogoutReason.ADMIN_FORCED, note="Left without logging out")
    installation.sessions = _sessions(servers, admin, maria, kenji)
    servers["routing-b"] = _server("routing-b", aw.port + 1)
    sofia = _agent(servers["routing-b"], "sofia", "Sofia", "Rossi", "1107", ["Sales"])
    installation.sessions |= _fail_routing_b(servers["routing-b"], sofia, kenji)
    _ready(kenji)
    # routing-c is being patched: drained with a deadline and its alerts silenced, so that
    # the pages show the drain, the empty-and-safe-to-restart state and "End silence".
    servers["routing-c"] = _server("routing-c", aw.port + 2)
    server_drain(server_id=servers["routing-c"].pk, actor=admin, reason="Patching the OS", deadline_minutes=30)
    server_silence_start(server_id=servers["routing-c"].pk, minutes=60, actor=admin, reason="OS patch window")
    policy_update(actor=admin, reason="Give callers who hung up two minutes", changes={"hung_up_grace_seconds": 120})
    return installation
