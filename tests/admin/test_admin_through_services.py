"""Issue 22, point 4: saving in the Django admin goes through the services.

Driven through the real admin (a superuser's browser-like client that sends the CSRF
token): each save asks a reason, leaves an audit entry with the actor, the reason and the
before/after of what changed, and tells the Media Blender where the desktop path does;
what the ICM decides is read-only there, and a crafted POST cannot change it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from failover.choices import AuditAction, Health, PeerKind, PeerPriority
from failover.models import AuditEntry, NotificationChannel, Peer, Server
from failover.services.configuration import REDACTED
from failover.services.topology import server_ensure
from sessions.choices import AgentState
from sessions.models import Agent, SkillGroup
from sessions.services.media_blender import agent_sync
from tests.admin.test_admin_pages import admin_url, form_data, peer_form_index
from tests.factories import AgentFactory, PeerFactory, SkillGroupFactory, peer_mark_connected
from tests.peering.conftest import start_peer  # noqa: F401  (fixture)
from tests.sessions.conftest import celery_eager, groups, make_agent, mb_agents, media_blender  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_browser(admin_user: AbstractBaseUser) -> Client:
    """The superuser, with CSRF checked as for a real browser."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    return client


def page_and_data(client: Client, url: str) -> tuple[Any, dict[str, Any]]:
    """The change page and what its form would post back unchanged, CSRF token included."""
    page = client.get(url)
    assert page.status_code == 200
    return page, {**form_data(page), "csrfmiddlewaretoken": str(page.context["csrf_token"])}


def only_entry(action: AuditAction) -> AuditEntry:
    [entry] = AuditEntry.objects.filter(action=action)
    return entry


def errors(response: Any) -> dict[str, list[str]]:
    return response.context["adminform"].form.errors if response.context else {}


# --- Agents: local settings through the service, the rest the ICM's ---------------------------


def test_an_agents_new_slot_count_is_audited_and_registered_with_the_media_blender(
    admin_browser: Client,
    admin_user: AbstractBaseUser,
    media_blender: Any,  # noqa: F811  (the fixture)
    make_agent: Callable[..., Agent],  # noqa: F811  (the fixture)
    django_capture_on_commit_callbacks: Any,
) -> None:
    process, _ = media_blender
    ann = make_agent("ann", "Sales", max_sessions=1)
    assert agent_sync(agent_id=ann.pk)
    assert mb_agents(process)["ann"]["max_sessions"] == 1
    url = admin_url(Agent, "change", ann.pk)
    _, data = page_and_data(admin_browser, url)
    data |= {"max_sessions": 3, "reason": "Trained for three chats"}

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_browser.post(url, data)

    assert response.status_code == 302, errors(response)
    assert Agent.objects.get(pk=ann.pk).max_sessions == 3
    entry = only_entry(AuditAction.AGENT_SETTINGS_CHANGED)
    assert (entry.actor, entry.reason) == (admin_user, "Trained for three chats")
    assert (entry.before, entry.after) == ({"max_sessions": 1}, {"max_sessions": 3})
    assert mb_agents(process)["ann"]["max_sessions"] == 3  # the real simulator was told


def test_disabling_a_logged_out_agent_is_audited(admin_browser: Client, admin_user: AbstractBaseUser) -> None:
    agent = AgentFactory(icm_id="1007")
    url = admin_url(Agent, "change", agent.pk)
    _, data = page_and_data(admin_browser, url)
    del data["enabled"]  # an unticked checkbox
    data["reason"] = "On leave"

    response = admin_browser.post(url, data)

    assert response.status_code == 302, errors(response)
    assert not Agent.objects.get(pk=agent.pk).enabled
    entry = only_entry(AuditAction.AGENT_SETTINGS_CHANGED)
    assert (entry.actor, entry.reason, entry.before, entry.after) == (
        admin_user,
        "On leave",
        {"enabled": True},
        {"enabled": False},
    )


def test_an_agent_change_without_a_reason_is_a_form_error_and_changes_nothing(admin_browser: Client) -> None:
    agent = AgentFactory(max_sessions=1)
    url = admin_url(Agent, "change", agent.pk)
    _, data = page_and_data(admin_browser, url)
    data["max_sessions"] = 4

    response = admin_browser.post(url, data)

    assert response.status_code == 200
    assert set(errors(response)) == {"reason"}
    assert Agent.objects.get(pk=agent.pk).max_sessions == 1
    assert not AuditEntry.objects.exists()


def test_a_crafted_post_cannot_change_what_the_icm_decides(admin_browser: Client, server: Server) -> None:
    sales = SkillGroupFactory(server=server, name="Sales", icm_id="5001")
    support = SkillGroupFactory(server=server, name="Support", icm_id="5002")
    agent = AgentFactory(server=server, icm_id="1007", user__username="agent07")
    agent.skill_groups.add(sales)
    other = AgentFactory(user__username="someone-else").user
    url = admin_url(Agent, "change", agent.pk)
    _, data = page_and_data(admin_browser, url)
    data |= {
        "skill_groups": [support.pk],
        "icm_id": "9999",
        "user": other.pk,
        "state": AgentState.READY,
        "reason": "Crafted",
    }

    response = admin_browser.post(url, data)

    assert response.status_code == 302, errors(response)
    agent.refresh_from_db()
    assert (agent.icm_id, agent.user.username, agent.state) == ("1007", "agent07", AgentState.LOGGED_OUT)
    assert list(agent.skill_groups.all()) == [sales]
    assert not AuditEntry.objects.exists()  # nothing of its own changed


def test_agents_and_skill_groups_are_added_and_removed_by_the_wizards_not_here(
    admin_browser: Client, server: Server
) -> None:
    agent = AgentFactory(server=server)
    group = SkillGroupFactory(server=server)
    token = str(admin_browser.get(admin_url(Agent, "changelist")).context["csrf_token"])

    for model, obj in ((Agent, agent), (SkillGroup, group)):
        assert admin_browser.get(admin_url(model, "add")).status_code == 403
        deleting = admin_browser.post(admin_url(model, "delete", obj.pk), {"post": "yes", "csrfmiddlewaretoken": token})
        assert deleting.status_code == 403
        assert model.objects.filter(pk=obj.pk).exists()
    changed = admin_browser.post(
        admin_url(SkillGroup, "change", group.pk), {"name": "Renamed", "csrfmiddlewaretoken": token}
    )
    assert changed.status_code == 403
    assert SkillGroup.objects.get(pk=group.pk).name == group.name
    for model, obj in ((Agent, agent), (SkillGroup, group)):
        assert reverse("console-wizards") in admin_browser.get(admin_url(model, "change", obj.pk)).content.decode()


# --- Servers and peers -----------------------------------------------------------------------


@pytest.fixture
def configured(server: Server) -> Server:
    server = server_ensure(name=server.name, base_url="http://127.0.0.1:8000", description="Routing A")
    connected = PeerFactory(
        server=server, kind=PeerKind.MEDIA_BLENDER, priority=PeerPriority.PRIMARY, name="routing-a-mb-1", port=7101
    )
    PeerFactory(
        server=server, kind=PeerKind.MEDIA_BLENDER, priority=PeerPriority.SECONDARY, name="routing-a-mb-2", port=7102
    )
    peer_mark_connected(connected, epoch=2)
    return server


def test_a_server_change_is_audited_with_before_and_after_and_leaves_its_health_alone(
    admin_browser: Client, admin_user: AbstractBaseUser, configured: Server
) -> None:
    Server.objects.filter(pk=configured.pk).update(health=Health.UP)
    url = admin_url(Server, "change", configured.pk)
    _, data = page_and_data(admin_browser, url)
    data |= {"description": "Routing A, hall 2", "health": Health.DOWN, "reason": "Moved to hall 2"}

    with CaptureQueriesContext(connection) as queries:
        response = admin_browser.post(url, data)

    assert response.status_code == 302, errors(response)
    # Only the changed column is written: the monitor may have written health meanwhile.
    [update] = [query["sql"] for query in queries if query["sql"].startswith('UPDATE "failover_server"')]
    assert update.split(" WHERE ")[0].count('"') == 4, update  # the table and "description"
    assert '"description"' in update
    configured.refresh_from_db()
    assert (configured.description, configured.health) == ("Routing A, hall 2", Health.UP)
    entry = only_entry(AuditAction.SERVER_CHANGED)
    assert (entry.actor, entry.reason) == (admin_user, "Moved to hall 2")
    assert (entry.before, entry.after) == ({"description": "Routing A"}, {"description": "Routing A, hall 2"})


def test_a_server_change_without_a_reason_is_a_form_error_and_changes_nothing(
    admin_browser: Client, configured: Server
) -> None:
    url = admin_url(Server, "change", configured.pk)
    page, data = page_and_data(admin_browser, url)
    data |= {"description": "Elsewhere", f"peers-{peer_form_index(page, Peer.objects.get(port=7102))}-port": 7202}

    response = admin_browser.post(url, data)

    assert response.status_code == 200
    assert set(errors(response)) == {"reason"}
    assert Server.objects.get(pk=configured.pk).description == "Routing A"
    assert Peer.objects.filter(port=7102).exists()
    assert not AuditEntry.objects.exists()


def test_a_server_added_in_the_admin_is_audited(admin_browser: Client, admin_user: AbstractBaseUser) -> None:
    token = str(admin_browser.get(admin_url(Server, "add")).context["csrf_token"])
    data = {"name": "routing-c", "role": "routing", "base_url": "", "description": "New", "reason": "Capacity"}
    data |= {"peers-TOTAL_FORMS": 1, "peers-INITIAL_FORMS": 0, "peers-MIN_NUM_FORMS": 0, "peers-MAX_NUM_FORMS": 4}
    data |= {"peers-0-kind": PeerKind.MEDIA_BLENDER, "peers-0-priority": PeerPriority.PRIMARY}
    data |= {"peers-0-name": "routing-c-mb-1", "peers-0-host": "10.0.0.5", "peers-0-port": 7301}

    response = admin_browser.post(admin_url(Server, "add"), {**data, "csrfmiddlewaretoken": token})

    assert response.status_code == 302, errors(response)
    server = only_entry(AuditAction.SERVER_CREATED)
    assert (server.actor, server.reason, server.before) == (admin_user, "Capacity", {})
    assert server.after == {"name": "routing-c", "role": "routing", "base_url": "", "description": "New"}
    peer = only_entry(AuditAction.PEER_CREATED)
    assert (peer.reason, peer.after["name"], peer.after["host"], peer.after["port"]) == (
        "Capacity",
        "routing-c-mb-1",
        "10.0.0.5",
        7301,
    )
    assert Server.objects.get(name="routing-c").links.count() == 2


def test_a_peers_address_change_and_deletion_are_audited(
    admin_browser: Client, admin_user: AbstractBaseUser, configured: Server
) -> None:
    url = admin_url(Server, "change", configured.pk)
    connected, standby = Peer.objects.get(port=7101), Peer.objects.get(port=7102)
    page, data = page_and_data(admin_browser, url)
    data |= {
        f"peers-{peer_form_index(page, connected)}-host": "10.0.0.7",
        f"peers-{peer_form_index(page, standby)}-DELETE": "on",
        "reason": "MB-1 renumbered, MB-2 retired",
    }

    response = admin_browser.post(url, data)

    assert response.status_code == 302, errors(response)
    connected.refresh_from_db()
    assert (connected.host, connected.is_connected, connected.connected_epoch) == ("10.0.0.7", True, 2)
    changed = only_entry(AuditAction.PEER_CHANGED)
    assert (changed.actor, changed.reason) == (admin_user, "MB-1 renumbered, MB-2 retired")
    assert (changed.before, changed.after) == ({"host": "127.0.0.1"}, {"host": "10.0.0.7"})
    deleted = only_entry(AuditAction.PEER_DELETED)
    assert (deleted.object_id, deleted.before["name"], deleted.before["port"]) == (
        str(standby.pk),
        "routing-a-mb-2",
        7102,
    )
    assert not Peer.objects.filter(pk=standby.pk).exists()


# --- Notification channels ----------------------------------------------------------------------


def channel_post(client: Client, page: str, **fields: Any) -> Any:
    token = str(client.get(page).context["csrf_token"])
    data = {"kind": "webhook", "enabled": "on", "min_severity": "warning", "csrfmiddlewaretoken": token, **fields}
    return client.post(page, data)


def no_entry_mentions(text: str) -> bool:
    return all(text not in json.dumps([e.before, e.after, e.reason]) for e in AuditEntry.objects.all())


def test_a_channel_added_and_changed_in_the_admin_is_audited_without_its_secret(
    admin_browser: Client, admin_user: AbstractBaseUser
) -> None:
    added = channel_post(
        admin_browser,
        admin_url(NotificationChannel, "add"),
        name="ops",
        url="https://hooks.example.test/a",
        secret="first-secret-1234",
        reason="Night shift paging",
    )
    assert added.status_code == 302, errors(added)
    channel = NotificationChannel.objects.get(name="ops")
    created = only_entry(AuditAction.NOTIFICATION_CHANNEL_CREATED)
    assert (created.actor, created.reason, created.after["url"]) == (
        admin_user,
        "Night shift paging",
        "https://hooks.example.test/a",
    )
    assert created.after["secret"] == REDACTED

    url = admin_url(NotificationChannel, "change", channel.pk)
    _, data = page_and_data(admin_browser, url)
    data |= {"url": "https://hooks.example.test/b", "secret": "second-secret-5678", "reason": "Receiver moved"}
    changed = admin_browser.post(url, data)

    assert changed.status_code == 302, errors(changed)
    channel.refresh_from_db()
    assert (channel.url, channel.secret) == ("https://hooks.example.test/b", "second-secret-5678")
    entry = only_entry(AuditAction.NOTIFICATION_CHANNEL_CHANGED)
    assert (entry.actor, entry.reason) == (admin_user, "Receiver moved")
    assert entry.before == {"url": "https://hooks.example.test/a", "secret": REDACTED}
    assert entry.after == {"url": "https://hooks.example.test/b", "secret": REDACTED}
    assert no_entry_mentions("first-secret-1234")
    assert no_entry_mentions("second-secret-5678")


def test_a_channel_change_without_a_reason_is_a_form_error(admin_browser: Client) -> None:
    channel = NotificationChannel.objects.create(name="ops", kind="webhook", url="https://hooks.example.test/a")
    url = admin_url(NotificationChannel, "change", channel.pk)
    _, data = page_and_data(admin_browser, url)
    del data["enabled"]  # unticked

    response = admin_browser.post(url, data)

    assert response.status_code == 200
    assert set(errors(response)) == {"reason"}
    assert NotificationChannel.objects.get(pk=channel.pk).enabled
    assert not AuditEntry.objects.exists()


def test_deleting_a_channel_asks_a_reason_and_is_audited(admin_browser: Client, admin_user: AbstractBaseUser) -> None:
    channel = NotificationChannel.objects.create(
        name="ops", kind="webhook", url="https://hooks.example.test/a", secret="kept-out-of-history"
    )
    url = admin_url(NotificationChannel, "delete", channel.pk)
    confirm = admin_browser.get(url)
    assert 'name="reason"' in confirm.content.decode()
    token = str(confirm.context["csrf_token"])

    refused = admin_browser.post(url, {"post": "yes", "csrfmiddlewaretoken": token})

    assert refused.status_code == 200
    assert "This field is required." in refused.content.decode()
    assert NotificationChannel.objects.filter(pk=channel.pk).exists()

    deleted = admin_browser.post(url, {"post": "yes", "reason": "Receiver retired", "csrfmiddlewaretoken": token})

    assert deleted.status_code == 302
    assert not NotificationChannel.objects.filter(pk=channel.pk).exists()
    entry = only_entry(AuditAction.NOTIFICATION_CHANNEL_DELETED)
    assert (entry.actor, entry.reason, entry.object_id) == (admin_user, "Receiver retired", str(channel.pk))
    assert (entry.before["name"], entry.before["secret"]) == ("ops", REDACTED)
    assert no_entry_mentions("kept-out-of-history")
    changelist = admin_browser.get(admin_url(NotificationChannel, "changelist")).content.decode()
    assert "delete_selected" not in changelist
