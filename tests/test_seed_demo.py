"""``manage.py seed_demo``: the demo topology, agents and log-ins, idempotent."""

from __future__ import annotations

import re
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from collabadmin.stack import stack_processes
from common import roles
from configsync.services.verify import verify_run
from failover.choices import PeerKind, PeerPriority, SyncRunState
from failover.models import Link, Peer, Policy, Server
from sessions.models import Agent, SkillGroup
from tests.factories import UserFactory, peer_mark_connected
from tests.peering.conftest import start_peer  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db

User = get_user_model()
AGENT_USERNAMES = [f"agent{n:02d}" for n in range(1, 13)]


def seed(*args: str) -> str:
    out = StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def printed_password(output: str, username: str) -> str:
    match = re.search(rf"^\s+{username}\s+(\S+)\s", output, re.MULTILINE)
    assert match, f"no log-in line for {username} in:\n{output}"
    return match.group(1)


@pytest.fixture
def debug_on(settings: Any) -> None:
    settings.DEBUG = True


@pytest.fixture
def debug_off(settings: Any) -> None:
    settings.DEBUG = False


def test_running_it_twice_gives_each_demo_row_exactly_once() -> None:
    seed()
    seed()

    assert sorted(Server.objects.values_list("name", "base_url")) == [
        ("routing-a", "http://127.0.0.1:8000"),
        ("routing-b", "http://127.0.0.1:8001"),
    ]
    assert Peer.objects.count() == 8
    assert Link.objects.count() == 4
    assert SkillGroup.objects.count() == 6
    assert sorted(Agent.objects.values_list("user__username", flat=True)) == AGENT_USERNAMES
    assert User.objects.filter(username="admin", is_staff=True, is_superuser=True).exists()
    assert User.objects.count() == 16  # the superuser, one user per role, 12 agents
    assert Policy.objects.count() == 1


def test_one_user_per_role_with_its_demo_password(debug_on: None) -> None:
    output = seed()

    for role in roles.ROLES:
        user = User.objects.get(username=role.key)
        assert list(user.groups.values_list("name", flat=True)) == [role.group]
        assert {permission.name for permission in role.permissions} <= user.get_all_permissions()
        assert not user.is_staff
        assert not user.is_superuser
        assert printed_password(output, role.key) == f"{role.key}-demo"
        assert user.check_password(f"{role.key}-demo")
    assert not User.objects.get(username="viewer").has_perm(roles.END_SESSIONS.name)
    assert not User.objects.get(username="supervisor").has_perm(roles.SWITCH_OVER_LINKS.name)


def test_both_routing_servers_share_the_icms_skill_groups() -> None:
    # Issue 15, point 2: each demo server had its own skill group ids, so a session moved
    # off a failed server found no skill group with its id on the survivor.
    seed()

    by_server = {
        name: sorted(SkillGroup.objects.filter(server__name=name).values_list("icm_id", "name"))
        for name in ("routing-a", "routing-b")
    }
    shared = [("5001", "Sales"), ("5002", "Support"), ("5003", "Billing")]
    assert by_server == {"routing-a": shared, "routing-b": shared}


def test_an_older_demo_database_is_brought_to_the_shared_skill_group_ids() -> None:
    seed()
    routing_b = Server.objects.get(name="routing-b")
    for old_id, name in (("5101", "Sales"), ("5102", "Support"), ("5103", "Billing")):
        SkillGroup.objects.filter(server=routing_b, name=name).update(icm_id=old_id)
    billing = SkillGroup.objects.get(server=routing_b, name="Billing")

    seed()

    billing.refresh_from_db()
    assert billing.icm_id == "5003"  # the same row: its agents keep it
    assert SkillGroup.objects.filter(server=routing_b).count() == 3
    assert Agent.objects.get(user__username="agent11").skill_groups.get() == billing


def test_the_peers_listen_on_fixed_local_ports() -> None:
    seed()

    peers = {
        peer.name: (peer.server.name, peer.kind, peer.priority, peer.host, peer.port)
        for peer in Peer.objects.select_related("server")
    }
    mb, aw = PeerKind.MEDIA_BLENDER, PeerKind.ADMIN_WORKSTATION
    primary, secondary = PeerPriority.PRIMARY, PeerPriority.SECONDARY
    assert peers == {
        "routing-a-mb-1": ("routing-a", mb, primary, "127.0.0.1", 7101),
        "routing-a-mb-2": ("routing-a", mb, secondary, "127.0.0.1", 7102),
        "routing-a-aw-1": ("routing-a", aw, primary, "127.0.0.1", 7103),
        "routing-a-aw-2": ("routing-a", aw, secondary, "127.0.0.1", 7104),
        "routing-b-mb-1": ("routing-b", mb, primary, "127.0.0.1", 7201),
        "routing-b-mb-2": ("routing-b", mb, secondary, "127.0.0.1", 7202),
        "routing-b-aw-1": ("routing-b", aw, primary, "127.0.0.1", 7203),
        "routing-b-aw-2": ("routing-b", aw, secondary, "127.0.0.1", 7204),
    }


def test_each_server_has_three_skill_groups_and_six_agents() -> None:
    seed()

    for server in Server.objects.all():
        assert sorted(server.skill_groups.values_list("name", flat=True)) == ["Billing", "Sales", "Support"]
        assert server.agents.count() == 6


def test_each_agent_is_in_one_or_two_skill_groups_of_its_own_server() -> None:
    seed()

    for agent in Agent.objects.select_related("user").prefetch_related("skill_groups"):
        groups = list(agent.skill_groups.all())
        assert 1 <= len(groups) <= 2, agent
        assert {group.server_id for group in groups} == {agent.server_id}, agent
        assert agent.max_sessions == 2
        assert agent.user.first_name
        assert agent.user.last_name
        assert not agent.user.is_staff


def test_with_debug_on_the_log_ins_use_the_documented_demo_passwords(debug_on: None) -> None:
    output = seed()

    assert printed_password(output, "admin") == "admin-demo"
    assert User.objects.get(username="admin").check_password("admin-demo")
    for username in AGENT_USERNAMES:
        assert printed_password(output, username) == "agent-demo"
        assert User.objects.get(username=username).check_password("agent-demo")


def test_with_debug_off_new_users_get_random_passwords_printed_once(debug_off: None) -> None:
    first = seed()
    second = seed()

    passwords = {username: printed_password(first, username) for username in ["admin", *AGENT_USERNAMES]}
    assert len(set(passwords.values())) == len(passwords)
    for username, password in passwords.items():
        assert password not in ("admin-demo", "agent-demo")
        assert User.objects.get(username=username).check_password(password)
        assert password not in second
        assert printed_password(second, username) == "(unchanged)"


def test_a_second_run_never_resets_a_password(debug_on: None) -> None:
    seed()
    user = User.objects.get(username="agent03")
    user.set_password("chosen-by-the-agent")
    user.save()

    output = seed()

    user.refresh_from_db()
    assert user.check_password("chosen-by-the-agent")
    assert printed_password(output, "agent03") == "(unchanged)"


def test_an_existing_admin_keeps_its_password_and_becomes_staff_and_superuser(debug_on: None) -> None:
    existing = UserFactory(username="admin", is_staff=False, is_superuser=False)
    existing.set_password("their-own-secret")
    existing.save()

    output = seed()

    admin = User.objects.get(username="admin")
    assert admin.check_password("their-own-secret")
    assert admin.is_staff
    assert admin.is_superuser
    assert printed_password(output, "admin") == "(unchanged)"


def test_reset_passwords_sets_the_demo_passwords_again(debug_on: None) -> None:
    seed()
    user = User.objects.get(username="agent03")
    user.set_password("forgotten")
    user.save()

    output = seed("--reset-passwords")

    user.refresh_from_db()
    assert user.check_password("agent-demo")
    assert printed_password(output, "agent03") == "agent-demo"


def test_the_output_lists_every_log_in_and_the_counts() -> None:
    output = seed()

    for username in ["admin", *AGENT_USERNAMES]:
        printed_password(output, username)
    assert "Servers: 2, peers: 8, links: 4, skill groups: 6, agents: 12." in output


@pytest.mark.django_db(transaction=True)
def test_a_fresh_demo_starts_each_pair_on_one_simulated_icm_in_sync(debug_on, settings, tmp_path, start_peer):  # noqa: F811
    """seed_demo writes each server's simulated ICM, the one store both its Admin
    Workstations serve, from the demo database: Verify on a fresh demo finds nothing (no
    out-of-sync alert on first start) through either AW. The stack starts both AWs of a
    pair on it. A second run leaves the files alone (the ICM keeps its changes)."""
    settings.VAR_DIR = tmp_path
    seed()
    stores = {name: tmp_path / f"icm-{name}.json" for name in ("routing-a", "routing-b")}
    assert all(path.exists() for path in stores.values())
    data = stores["routing-a"]
    data.write_text(data.read_text())  # what the ICM holds now is the simulator's business
    before = data.stat().st_mtime_ns
    seed()
    assert data.stat().st_mtime_ns == before

    simulators = [
        spec.argv for spec in stack_processes(host="127.0.0.1", port=8000) if "admin-workstation" in spec.argv
    ]
    assert {argv[argv.index("--name") + 1]: argv[argv.index("--icm-store") + 1] for argv in simulators} == {
        "routing-a-aw-1": str(stores["routing-a"]),
        "routing-a-aw-2": str(stores["routing-a"]),
        "routing-b-aw-1": str(stores["routing-b"]),
        "routing-b-aw-2": str(stores["routing-b"]),
    }

    server = Server.objects.get(name="routing-a")
    for epoch, name in enumerate(("routing-a-aw-1", "routing-a-aw-2"), start=1):
        aw = start_peer("admin-workstation", "--name", name, "--icm-store", str(data))
        Peer.objects.filter(name=name).update(port=aw.port, health="up")
        peer_mark_connected(Peer.objects.get(name=name), epoch=epoch)

        run = verify_run(server_id=server.pk, actor="test")

        assert (run.state, run.plan) == (SyncRunState.IN_SYNC, [])
