"""The Django admin: every page of our models, server configuration, read-only history, access, queries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, models
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from failover.choices import AuditAction, PeerConnection, PeerKind, PeerPriority, SyncRunState
from failover.models import (
    Alert,
    AuditEntry,
    FailoverEvent,
    Lease,
    Link,
    NodeHeartbeat,
    Peer,
    Policy,
    Server,
    SyncRun,
    WizardRun,
)
from failover.services.maintenance import peer_set_maintenance
from failover.services.topology import server_ensure
from sessions.choices import AgentState, SessionState
from sessions.models import Agent, CollaborationSession, SkillGroup
from tests.factories import (
    AgentFactory,
    AlertFactory,
    AuditEntryFactory,
    FailoverEventFactory,
    PeerFactory,
    ServerFactory,
    SessionFactory,
    SkillGroupFactory,
    StaffFactory,
    SyncRunFactory,
    WizardRunFactory,
    peer_mark_connected,
)

pytestmark = pytest.mark.django_db

HISTORY_MODELS = [FailoverEvent, AuditEntry, Alert, WizardRun, SyncRun]
# Shown but never added, changed or deleted in the admin.
READ_ONLY_MODELS = [*HISTORY_MODELS, Link, CollaborationSession, Lease, NodeHeartbeat, SkillGroup]
LISTED_MODELS = [Server, Link, Agent, SkillGroup, CollaborationSession, *HISTORY_MODELS, Lease, NodeHeartbeat]


def admin_url(model: type[models.Model], view: str, *args: Any) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def form_data(response: Any) -> dict[str, Any]:
    """What a browser would post back from an admin change page, unchanged."""
    data: dict[str, Any] = {}

    def add(form: Any) -> None:
        for name, field in form.fields.items():
            value = form.initial.get(name, field.initial)
            if isinstance(value, bool) and not value:
                continue  # an unticked checkbox is absent from the post
            if isinstance(value, list | tuple):
                data[form.add_prefix(name)] = [getattr(item, "pk", item) for item in value]
            elif value is not None:
                data[form.add_prefix(name)] = getattr(value, "pk", value)

    add(response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        add(formset.management_form)
        for form in formset.forms:
            add(form)
    return data


def peer_form_index(response: Any, peer: Peer) -> int:
    formset = response.context["inline_admin_formsets"][0].formset
    return next(index for index, form in enumerate(formset.forms) if form.instance == peer)


@pytest.fixture
def world(server: Server) -> dict[type[models.Model], tuple[models.Model, str]]:
    """One row of each of our models, and a text its admin pages must show."""
    server = server_ensure(name=server.name, base_url="http://127.0.0.1:8000")
    mb_1 = PeerFactory(server=server, kind=PeerKind.MEDIA_BLENDER, priority=PeerPriority.PRIMARY, name="routing-a-mb-1")
    mb_2 = PeerFactory(
        server=server, kind=PeerKind.MEDIA_BLENDER, priority=PeerPriority.SECONDARY, name="routing-a-mb-2"
    )
    peer_mark_connected(mb_1, epoch=3)
    link = server.links.get(kind=PeerKind.MEDIA_BLENDER)
    group = SkillGroupFactory(server=server, name="Sales", icm_id="5001")
    agent = AgentFactory(server=server, user__username="agent07", icm_id="1007", max_sessions=2)
    agent.skill_groups.add(group)
    session = SessionFactory(
        server=server,
        caller_name="Ada Lovelace",
        skill_group=group,
        state=SessionState.ACTIVE,
        agent=agent,
        routed_at=timezone.now(),
        activated_at=timezone.now(),
    )
    event = FailoverEventFactory(
        server=server, link=link, from_peer=mb_2, to_peer=mb_1, epoch=3, reason="routing-a-mb-2 stopped answering"
    )
    audit = AuditEntryFactory(object_repr="routing-a Media Blender link", reason="Switched by hand for a test")
    alert = AlertFactory(server=server, message="Configuration may be out of sync: run Verify and Sync")
    wizard = WizardRunFactory(server=server, error="Admin Workstation link switched over")
    sync = SyncRunFactory(server=server, state=SyncRunState.FAILED, error="ICM unreachable through routing-a-aw-2")
    lease = Lease.objects.create(name="health-poller", holder="node-routing-a")
    beat = NodeHeartbeat.objects.create(
        server=server, node="host-a:4242", started_at=timezone.now(), beat_at=timezone.now(), http_wait_ms=1250
    )
    return {
        Server: (server, "http://127.0.0.1:8000"),
        Link: (link, "routing-a-mb-1"),
        Agent: (agent, "agent07"),
        SkillGroup: (group, "5001"),
        CollaborationSession: (session, "Ada Lovelace"),
        FailoverEvent: (event, "routing-a-mb-2 stopped answering"),
        AuditEntry: (audit, "Switched by hand for a test"),
        Alert: (alert, "Configuration may be out of sync"),
        WizardRun: (wizard, "Admin Workstation link switched over"),
        SyncRun: (sync, "ICM unreachable through routing-a-aw-2"),
        Lease: (lease, "node-routing-a"),
        NodeHeartbeat: (beat, "host-a:4242"),
        Policy: (Policy.current(), "Consecutive good probes before a peer is up."),
    }


# --- Pages ---------------------------------------------------------------------------------


def test_the_admin_index_lists_our_apps(admin_client: Client) -> None:
    response = admin_client.get(reverse("admin:index"))

    assert response.status_code == 200
    assert b"Failover" in response.content
    assert b"Collaboration sessions" in response.content


@pytest.mark.parametrize("model", LISTED_MODELS, ids=lambda model: model.__name__)
def test_every_list_page_shows_its_rows(admin_client: Client, world: dict, model: type[models.Model]) -> None:
    _, text = world[model]

    response = admin_client.get(admin_url(model, "changelist"))

    assert response.status_code == 200
    assert text in response.content.decode()


@pytest.mark.parametrize("model", [*LISTED_MODELS, Policy], ids=lambda model: model.__name__)
def test_every_change_page_shows_its_row(admin_client: Client, world: dict, model: type[models.Model]) -> None:
    obj, text = world[model]

    response = admin_client.get(admin_url(model, "change", obj.pk))

    assert response.status_code == 200
    assert text in response.content.decode()


def test_searching_and_filtering_the_lists_works(admin_client: Client, world: dict) -> None:
    agents = admin_client.get(admin_url(Agent, "changelist"), {"q": "agent07", "state__exact": AgentState.LOGGED_OUT})
    sessions = admin_client.get(
        admin_url(CollaborationSession, "changelist"), {"q": "Lovelace", "state__exact": SessionState.ACTIVE}
    )

    alerts = admin_client.get(admin_url(Alert, "changelist"), {"status": "open", "q": "Verify and Sync"})

    assert agents.status_code == 200
    assert agents.context["cl"].result_count == 1
    assert sessions.status_code == 200
    assert sessions.context["cl"].result_count == 1
    assert alerts.status_code == 200
    assert alerts.context["cl"].result_count == 1


# --- Servers and peers ---------------------------------------------------------------------


def test_a_server_added_with_its_peers_gets_both_links(admin_client: Client) -> None:
    peers = [
        (PeerKind.MEDIA_BLENDER, PeerPriority.PRIMARY, "routing-c-mb-1", 7301),
        (PeerKind.MEDIA_BLENDER, PeerPriority.SECONDARY, "routing-c-mb-2", 7302),
        (PeerKind.ADMIN_WORKSTATION, PeerPriority.PRIMARY, "routing-c-aw-1", 7303),
    ]
    data = {
        "name": "routing-c",
        "role": "routing",
        "base_url": "http://127.0.0.1:8002",
        "description": "Added in the admin",
        "reason": "New routing server",
        "peers-TOTAL_FORMS": len(peers),
        "peers-INITIAL_FORMS": 0,
        "peers-MIN_NUM_FORMS": 0,
        "peers-MAX_NUM_FORMS": 4,
    }
    for index, (kind, priority, name, port) in enumerate(peers):
        data |= {
            f"peers-{index}-kind": kind,
            f"peers-{index}-priority": priority,
            f"peers-{index}-name": name,
            f"peers-{index}-host": "127.0.0.1",
            f"peers-{index}-port": port,
        }

    response = admin_client.post(admin_url(Server, "add"), data)

    assert response.status_code == 302, response.context and response.context["errors"]
    server = Server.objects.get(name="routing-c")
    assert sorted(server.links.values_list("kind", flat=True)) == ["admin_workstation", "media_blender"]
    assert sorted(server.peers.values_list("port", flat=True)) == [7301, 7302, 7303]
    assert not server.peers.filter(connection=PeerConnection.CONNECTED).exists()


def test_a_server_added_without_peers_still_gets_both_links(admin_client: Client) -> None:
    data = {"name": "routing-d", "role": "routing", "base_url": "", "description": "", "reason": "New server"}
    data |= {"peers-TOTAL_FORMS": 0, "peers-INITIAL_FORMS": 0, "peers-MIN_NUM_FORMS": 0, "peers-MAX_NUM_FORMS": 4}

    response = admin_client.post(admin_url(Server, "add"), data)

    assert response.status_code == 302
    assert Link.objects.filter(server__name="routing-d").count() == 2


def test_renaming_a_server_keeps_its_links_and_makes_no_second_server(admin_client: Client, world: dict) -> None:
    server = world[Server][0]
    link_ids = set(server.links.values_list("id", flat=True))
    data = form_data(admin_client.get(admin_url(Server, "change", server.pk)))
    data |= {"name": "routing-z", "reason": "Renamed"}

    response = admin_client.post(admin_url(Server, "change", server.pk), data)

    assert response.status_code == 302, response.context and response.context["errors"]
    assert list(Server.objects.values_list("name", flat=True)) == ["routing-z"]
    assert set(Link.objects.filter(server=server).values_list("id", flat=True)) == link_ids


def test_the_runtime_fields_of_a_peer_cannot_be_changed_in_the_admin(admin_client: Client, world: dict) -> None:
    server = world[Server][0]
    secondary = Peer.objects.get(name="routing-a-mb-2")
    page = admin_client.get(admin_url(Server, "change", server.pk))
    data = form_data(page)
    index = peer_form_index(page, secondary)
    data[f"peers-{index}-connection"] = PeerConnection.CONNECTED
    data[f"peers-{index}-health"] = "up"
    data["reason"] = "Crafted"

    response = admin_client.post(admin_url(Server, "change", server.pk), data)

    assert response.status_code == 302
    secondary.refresh_from_db()
    assert secondary.connection == PeerConnection.STANDBY
    assert secondary.health == "unknown"


def test_saving_a_peer_writes_only_the_fields_the_form_changed(admin_client: Client, world: dict) -> None:
    server = world[Server][0]
    connected = Peer.objects.get(name="routing-a-mb-1")
    page = admin_client.get(admin_url(Server, "change", server.pk))
    data = form_data(page)
    data[f"peers-{peer_form_index(page, connected)}-port"] = 7199
    data["reason"] = "New port"

    with CaptureQueriesContext(connection) as queries:
        response = admin_client.post(admin_url(Server, "change", server.pk), data)

    assert response.status_code == 302
    updates = [query["sql"] for query in queries if query["sql"].startswith('UPDATE "failover_peer"')]
    assert len(updates) == 1
    assert '"port"' in updates[0]
    assert '"connection"' not in updates[0]
    assert '"health"' not in updates[0]
    connected.refresh_from_db()
    assert (connected.port, connected.is_connected) == (7199, True)


def test_putting_a_connected_peer_in_maintenance_drains_it_through_the_service(
    admin_client: Client, admin_user: Any, world: dict
) -> None:
    server = world[Server][0]
    connected = Peer.objects.get(name="routing-a-mb-1")
    Peer.objects.filter(name="routing-a-mb-2").update(health="up")
    page = admin_client.get(admin_url(Server, "change", server.pk))
    data = form_data(page)
    index = peer_form_index(page, connected)
    data |= {f"peers-{index}-in_maintenance": "on", "reason": "Firmware upgrade"}

    response = admin_client.post(admin_url(Server, "change", server.pk), data)

    assert response.status_code == 302, response.context and response.context["errors"]
    connected.refresh_from_db()
    assert connected.in_maintenance
    assert connected.maintenance_reason == "Firmware upgrade"
    assert not connected.is_connected
    assert Peer.objects.get(name="routing-a-mb-2").is_connected
    assert server.links.get(kind=PeerKind.MEDIA_BLENDER).epoch == 4
    assert FailoverEvent.objects.filter(kind="maintenance", actor=admin_user, reason="Firmware upgrade").exists()
    assert AuditEntry.objects.filter(action=AuditAction.PEER_MAINTENANCE_ON, actor=admin_user).exists()


def test_taking_a_peer_out_of_maintenance_goes_through_the_service(
    admin_client: Client, admin_user: Any, world: dict
) -> None:
    server = world[Server][0]
    standby = Peer.objects.get(name="routing-a-mb-2")
    peer_set_maintenance(peer_id=standby.pk, on=True, actor="system:test", reason="Firmware upgrade")
    page = admin_client.get(admin_url(Server, "change", server.pk))
    data = form_data(page)
    index = peer_form_index(page, standby)
    del data[f"peers-{index}-in_maintenance"]
    data["reason"] = "Upgrade done"

    response = admin_client.post(admin_url(Server, "change", server.pk), data)

    assert response.status_code == 302, response.context and response.context["errors"]
    standby.refresh_from_db()
    assert not standby.in_maintenance
    entry = AuditEntry.objects.get(action=AuditAction.PEER_MAINTENANCE_OFF)
    assert (entry.actor, entry.reason) == (admin_user, "Upgrade done")


def test_a_maintenance_change_needs_a_reason(admin_client: Client, world: dict) -> None:
    server = world[Server][0]
    standby = Peer.objects.get(name="routing-a-mb-2")
    page = admin_client.get(admin_url(Server, "change", server.pk))
    data = form_data(page)
    data[f"peers-{peer_form_index(page, standby)}-in_maintenance"] = "on"

    response = admin_client.post(admin_url(Server, "change", server.pk), data)

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["reason"] == ["This field is required."]
    standby.refresh_from_db()
    assert not standby.in_maintenance


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("DELETE", "on", "switch its link over before deleting it"),
        ("kind", PeerKind.ADMIN_WORKSTATION, "switch its link over before changing its kind"),
    ],
    ids=["delete", "kind"],
)
def test_a_connected_peer_is_not_deleted_or_moved_to_the_other_pair(
    admin_client: Client, world: dict, field: str, value: str, message: str
) -> None:
    server = world[Server][0]
    connected = Peer.objects.get(name="routing-a-mb-1")
    page = admin_client.get(admin_url(Server, "change", server.pk))
    data = form_data(page)
    data[f"peers-{peer_form_index(page, connected)}-{field}"] = value
    data["reason"] = "Tidying up"

    response = admin_client.post(admin_url(Server, "change", server.pk), data)

    assert response.status_code == 200
    assert message in response.content.decode()
    connected.refresh_from_db()
    assert connected.is_connected
    assert connected.kind == PeerKind.MEDIA_BLENDER


def test_a_standby_peer_can_be_deleted(admin_client: Client, world: dict) -> None:
    server = world[Server][0]
    standby = Peer.objects.get(name="routing-a-mb-2")
    page = admin_client.get(admin_url(Server, "change", server.pk))
    data = form_data(page)
    data[f"peers-{peer_form_index(page, standby)}-DELETE"] = "on"
    data["reason"] = "Decommissioned"

    response = admin_client.post(admin_url(Server, "change", server.pk), data)

    assert response.status_code == 302
    assert not Peer.objects.filter(pk=standby.pk).exists()


# --- Agents ----------------------------------------------------------------------------------


def test_a_logged_in_agent_cannot_be_disabled(admin_client: Client, world: dict) -> None:
    agent = world[Agent][0]
    Agent.objects.filter(pk=agent.pk).update(state=AgentState.READY)
    data = form_data(admin_client.get(admin_url(Agent, "change", agent.pk)))
    data.pop("enabled")
    data["reason"] = "Leaves the team"

    response = admin_client.post(admin_url(Agent, "change", agent.pk), data)

    assert response.status_code == 200
    assert "log it out before disabling it" in response.content.decode()
    assert Agent.objects.get(pk=agent.pk).enabled


# --- Policy ----------------------------------------------------------------------------------


def test_the_policy_list_goes_straight_to_its_one_row(admin_client: Client) -> None:
    response = admin_client.get(admin_url(Policy, "changelist"))

    assert response.status_code == 302
    assert response.url == admin_url(Policy, "change", Policy.current().pk)


def test_the_policy_cannot_be_added_twice_or_deleted(admin_client: Client) -> None:
    policy = Policy.current()

    assert admin_client.get(admin_url(Policy, "add")).status_code == 403
    assert admin_client.get(admin_url(Policy, "delete", policy.pk)).status_code == 403
    assert admin_client.post(admin_url(Policy, "delete", policy.pk), {"post": "yes"}).status_code == 403
    assert Policy.objects.count() == 1


def test_changing_the_policy_goes_through_the_service_with_a_reason(admin_client: Client, admin_user: Any) -> None:
    policy = Policy.current()
    data = form_data(admin_client.get(admin_url(Policy, "change", policy.pk)))
    data |= {"rise": 3, "reason": "Fewer false recoveries"}

    response = admin_client.post(admin_url(Policy, "change", policy.pk), data)

    assert response.status_code == 302
    assert Policy.current().rise == 3
    entry = AuditEntry.objects.get(action=AuditAction.POLICY_CHANGED)
    assert (entry.actor, entry.reason) == (admin_user, "Fewer false recoveries")
    assert (entry.before, entry.after) == ({"rise": 2}, {"rise": 3})


def test_a_policy_change_needs_a_reason_and_valid_values(admin_client: Client) -> None:
    policy = Policy.current()
    data = form_data(admin_client.get(admin_url(Policy, "change", policy.pk)))
    data |= {"rise": 3, "probe_interval_ms": 10}

    response = admin_client.post(admin_url(Policy, "change", policy.pk), data)

    assert response.status_code == 200
    assert set(response.context["adminform"].form.errors) == {"reason", "probe_interval_ms"}
    assert Policy.current().rise == 2
    assert not AuditEntry.objects.exists()


def test_a_server_probe_time_out_below_what_a_busy_node_needs_is_refused_in_the_admin(admin_client: Client) -> None:
    policy = Policy.current()
    data = form_data(admin_client.get(admin_url(Policy, "change", policy.pk)))
    data |= {"server_probe_timeout_ms": 20, "reason": "fuzzing"}

    response = admin_client.post(admin_url(Policy, "change", policy.pk), data)

    assert response.status_code == 200
    [message] = response.context["adminform"].form.errors["server_probe_timeout_ms"]
    assert "a busy node look failed" in message
    assert Policy.current().server_probe_timeout_ms == 1000
    assert not AuditEntry.objects.exists()


# --- Read-only history -------------------------------------------------------------------------


@pytest.mark.parametrize("model", READ_ONLY_MODELS, ids=lambda model: model.__name__)
def test_read_only_models_refuse_add_change_and_delete(
    admin_client: Client, world: dict, model: type[models.Model]
) -> None:
    obj, _ = world[model]
    count = model.objects.count()

    assert admin_client.get(admin_url(model, "add")).status_code == 403
    assert admin_client.post(admin_url(model, "change", obj.pk), {}).status_code == 403
    assert admin_client.get(admin_url(model, "delete", obj.pk)).status_code == 403
    assert admin_client.post(admin_url(model, "delete", obj.pk), {"post": "yes"}).status_code == 403
    assert model.objects.count() == count


@pytest.mark.parametrize("model", READ_ONLY_MODELS, ids=lambda model: model.__name__)
def test_read_only_models_offer_no_delete_action_and_no_save_button(
    admin_client: Client, world: dict, model: type[models.Model]
) -> None:
    obj, _ = world[model]

    changelist = admin_client.get(admin_url(model, "changelist"))
    change = admin_client.get(admin_url(model, "change", obj.pk))

    assert "delete_selected" not in changelist.content.decode()
    assert admin_url(model, "add") not in changelist.content.decode()
    assert 'name="_save"' not in change.content.decode()


# --- Who may enter -------------------------------------------------------------------------------


@pytest.mark.parametrize("persona", ["agent_client", "anonymous_client"])
@pytest.mark.parametrize(
    "url",
    ["/admin/", "/admin/failover/server/", "/admin/collab_sessions/agent/add/", "/admin/failover/auditentry/"],
)
def test_only_staff_get_past_the_admin_login(request: pytest.FixtureRequest, persona: str, url: str) -> None:
    client = request.getfixturevalue(persona)

    response = client.get(url)

    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))


# --- Query counts ----------------------------------------------------------------------------------


def make_server(n: int) -> None:
    server = ServerFactory()
    PeerFactory(server=server, kind=PeerKind.MEDIA_BLENDER)
    PeerFactory(server=server, kind=PeerKind.ADMIN_WORKSTATION)


def make_agent(n: int) -> None:
    agent = AgentFactory()
    agent.skill_groups.add(SkillGroupFactory(server=agent.server), SkillGroupFactory(server=agent.server))


def make_skill_group(n: int) -> None:
    AgentFactory().skill_groups.add(SkillGroupFactory())


def make_session(n: int) -> None:
    agent = AgentFactory()
    now = timezone.now()
    SessionFactory(
        server=agent.server,
        agent=agent,
        skill_group=SkillGroupFactory(server=agent.server),
        state=SessionState.ACTIVE,
        routed_at=now,
        activated_at=now,
    )


def make_failover_event(n: int) -> None:
    server = ServerFactory()
    FailoverEventFactory(
        server=server,
        link=server.links.first(),
        from_peer=PeerFactory(server=server, priority=PeerPriority.PRIMARY),
        to_peer=PeerFactory(server=server, priority=PeerPriority.SECONDARY),
        actor=StaffFactory(),
    )


def make_alert(n: int) -> None:
    AlertFactory(cleared_at=timezone.now(), cleared_by=StaffFactory())


MAKERS: dict[type[models.Model], Callable[[int], object]] = {
    Server: make_server,
    Link: make_server,
    Agent: make_agent,
    SkillGroup: make_skill_group,
    CollaborationSession: make_session,
    FailoverEvent: make_failover_event,
    AuditEntry: lambda n: AuditEntryFactory(actor=StaffFactory()),
    Alert: make_alert,
    WizardRun: lambda n: WizardRunFactory(),
    SyncRun: lambda n: SyncRunFactory(),
    Lease: lambda n: Lease.objects.create(name=f"lease-{n}", holder=f"node-{n}"),
}


def changelist_queries(client: Client, model: type[models.Model]) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(admin_url(model, "changelist"))
    assert response.status_code == 200
    return len(queries)


@pytest.mark.parametrize("model", list(MAKERS), ids=lambda model: model.__name__)
def test_list_pages_make_as_many_queries_for_twenty_rows_as_for_two(
    admin_client: Client, model: type[models.Model]
) -> None:
    make = MAKERS[model]
    for n in range(2):
        make(n)
    with_two = changelist_queries(admin_client, model)
    for n in range(2, 20):
        make(n)

    with_twenty = changelist_queries(admin_client, model)

    assert with_twenty == with_two
