"""``python manage.py seed_demo``: the demo topology, skill groups, agents and log-ins.

Idempotent: every row is found by its natural key and brought to the demo values, so a
second run changes nothing and adds nothing. Passwords are set only for users this run
creates (or all demo users with ``--reset-passwords``); an existing password is never
touched otherwise.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from collabadmin.stack import LOCAL_HOSTS, icm_store_path
from common.roles import ROLES
from configsync.services.local_config import local_config
from failover.choices import PeerKind, PeerPriority, ServerRole
from failover.models import Link, Peer, Policy, Server
from failover.peering.icm_store import IcmConfig, atomic_write_json
from failover.services.topology import peer_ensure, server_ensure
from sessions.models import Agent, SkillGroup

# Fixed so that the README can document them; used only while DEBUG is on.
DEMO_ADMIN_PASSWORD = "admin-demo"  # noqa: S105
DEMO_AGENT_PASSWORD = "agent-demo"  # noqa: S105
UNCHANGED = "(unchanged)"

MB, AW = PeerKind.MEDIA_BLENDER, PeerKind.ADMIN_WORKSTATION
PRIMARY, SECONDARY = PeerPriority.PRIMARY, PeerPriority.SECONDARY


@dataclass(frozen=True)
class DemoServer:
    name: str
    base_url: str
    description: str
    # (kind, priority, name suffix, port): the ports the README's simulators listen on.
    peers: tuple[tuple[PeerKind, PeerPriority, str, int], ...]


@dataclass(frozen=True)
class DemoAgent:
    username: str
    first_name: str
    last_name: str
    server: str
    icm_id: str
    skill_groups: tuple[str, ...]


SERVERS = (
    DemoServer(
        name="routing-a",
        base_url="http://127.0.0.1:8000",
        description="Demo routing server A",
        peers=(
            (MB, PRIMARY, "mb-1", 7101),
            (MB, SECONDARY, "mb-2", 7102),
            (AW, PRIMARY, "aw-1", 7103),
            (AW, SECONDARY, "aw-2", 7104),
        ),
    ),
    DemoServer(
        name="routing-b",
        base_url="http://127.0.0.1:8001",
        description="Demo routing server B",
        peers=(
            (MB, PRIMARY, "mb-1", 7201),
            (MB, SECONDARY, "mb-2", 7202),
            (AW, PRIMARY, "aw-1", 7203),
            (AW, SECONDARY, "aw-2", 7204),
        ),
    ),
)

# (ICM id, name). Both routing servers sit on one ICM, so they share its skill groups: the
# same ids and names on each (a session moved off a failed server keeps its skill group).
SKILL_GROUPS = (("5001", "Sales"), ("5002", "Support"), ("5003", "Billing"))

AGENTS = (
    DemoAgent("agent01", "Maria", "Lopez", "routing-a", "1001", ("Sales",)),
    DemoAgent("agent02", "James", "Carter", "routing-a", "1002", ("Sales", "Support")),
    DemoAgent("agent03", "Aisha", "Khan", "routing-a", "1003", ("Support",)),
    DemoAgent("agent04", "Tomasz", "Nowak", "routing-a", "1004", ("Support", "Billing")),
    DemoAgent("agent05", "Emma", "Schneider", "routing-a", "1005", ("Billing",)),
    DemoAgent("agent06", "Kenji", "Watanabe", "routing-a", "1006", ("Billing", "Sales")),
    DemoAgent("agent07", "Sofia", "Rossi", "routing-b", "1007", ("Sales",)),
    DemoAgent("agent08", "Daniel", "Okafor", "routing-b", "1008", ("Sales", "Support")),
    DemoAgent("agent09", "Lucie", "Martin", "routing-b", "1009", ("Support",)),
    DemoAgent("agent10", "Ravi", "Patel", "routing-b", "1010", ("Support", "Billing")),
    DemoAgent("agent11", "Hannah", "Becker", "routing-b", "1011", ("Billing",)),
    DemoAgent("agent12", "Lucas", "Silva", "routing-b", "1012", ("Billing", "Sales")),
)

ADMIN_USERNAME = "admin"


def skill_group_ensure(*, server: Server, icm_id: str, name: str) -> SkillGroup:
    """Create the skill group ``icm_id`` of ``server``, or bring the one with that id (else
    that name: an older demo gave each server its own ids) to the demo's id and name."""
    group = (
        SkillGroup.objects.filter(server=server, icm_id=icm_id).first()
        or SkillGroup.objects.filter(server=server, name=name).first()
        or SkillGroup(server=server)
    )
    group.icm_id = icm_id
    group.name = name
    group.full_clean()
    group.save()
    return group


def user_ensure(*, username: str, first_name: str, last_name: str) -> tuple[AbstractBaseUser, bool]:
    """Return the user and whether it was created; an existing user keeps its names and password."""
    user_model = get_user_model()
    user = user_model.objects.filter(username=username).first()
    if user is not None:
        return user, False
    user = user_model(username=username, first_name=first_name, last_name=last_name, email=f"{username}@example.test")
    user.set_unusable_password()  # replaced by the caller before the transaction commits
    user.save()
    return user, True


def agent_ensure(*, user: AbstractBaseUser, server: Server, icm_id: str, skill_groups: list[SkillGroup]) -> Agent:
    """Create or update the agent of ``user``; never touches its state or ``enabled``."""
    agent = Agent.objects.filter(user=user).first() or Agent(user=user)
    if agent.pk:
        # Agent.clean() checks the stored skill groups against the (maybe new) server.
        agent.skill_groups.set(skill_groups)
    agent.server = server
    agent.icm_id = icm_id
    # The demo's agents get what an agent added by a wizard gets: the policy's default.
    agent.max_sessions = Policy.current().agent_max_sessions
    agent.full_clean()
    agent.save()
    agent.skill_groups.set(skill_groups)
    return agent


class Command(BaseCommand):
    help = "Create or update the demo servers, peers, skill groups, agents and administrator (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--reset-passwords",
            action="store_true",
            help="Also set new passwords for demo users that already exist (the fixed demo ones when DEBUG is on).",
        )

    def handle(self, *args: Any, reset_passwords: bool = False, **options: Any) -> None:
        with transaction.atomic():
            logins = self._seed(reset_passwords=reset_passwords)
        self._seed_icm()
        self._print_summary(logins)

    def _seed_icm(self) -> None:
        """Give each server's simulated ICM (the one store both its local Admin
        Workstations serve) the configuration the demo database describes, so a fresh demo
        starts in sync (no "run Verify and Sync" alert).

        Only stores that do not exist yet are written: a simulated ICM keeps what wizards,
        syncs and ``peerctl icm-add-agent`` did to it across restarts, like a real one
        (``collabadmin.stack`` passes ``--icm-store var/icm-<server>.json`` to both AWs of
        a pair). Delete the files to start over.
        """
        servers = Server.objects.filter(peers__kind=PeerKind.ADMIN_WORKSTATION, peers__host__in=LOCAL_HOSTS).distinct()
        for server in servers.order_by("name"):
            path = icm_store_path(server.name)
            if path.exists():
                continue
            local = local_config(server.pk)
            config = IcmConfig(config_version=1)
            for icm_id, name in local.skill_groups.items():
                config.skill_groups[icm_id] = {"skill_group_id": icm_id, "name": name}
            for icm_id, agent in local.agents.items():
                config.agents[icm_id] = {
                    "agent_id": icm_id,
                    "name": agent["name"],
                    "enabled": agent["enabled"],
                    "skill_groups": sorted(agent["skill_groups"]),
                }
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(path, config.to_json())
            self.stdout.write(f"Simulated ICM of {server.name} (both its Admin Workstations) written to {path}")

    def _seed(self, *, reset_passwords: bool) -> list[tuple[str, str, str]]:
        Policy.current()
        servers: dict[str, Server] = {}
        groups: dict[tuple[str, str], SkillGroup] = {}
        for demo in SERVERS:
            server = server_ensure(
                name=demo.name, role=ServerRole.ROUTING, base_url=demo.base_url, description=demo.description
            )
            servers[demo.name] = server
            for kind, priority, suffix, port in demo.peers:
                peer_ensure(
                    server=server,
                    kind=kind,
                    priority=priority,
                    name=f"{demo.name}-{suffix}",
                    host="127.0.0.1",
                    port=port,
                )
            for icm_id, name in SKILL_GROUPS:
                groups[demo.name, name] = skill_group_ensure(server=server, icm_id=icm_id, name=name)

        admin, created = user_ensure(username=ADMIN_USERNAME, first_name="Demo", last_name="Administrator")
        if not (admin.is_staff and admin.is_superuser):
            admin.is_staff = admin.is_superuser = True
            admin.save(update_fields=["is_staff", "is_superuser"])
        logins = [
            (ADMIN_USERNAME, self._password(admin, created or reset_passwords, DEMO_ADMIN_PASSWORD), "superuser"),
            *self._role_users(reset_passwords=reset_passwords),
        ]

        for demo_agent in AGENTS:
            user, created = user_ensure(
                username=demo_agent.username, first_name=demo_agent.first_name, last_name=demo_agent.last_name
            )
            agent_ensure(
                user=user,
                server=servers[demo_agent.server],
                icm_id=demo_agent.icm_id,
                skill_groups=[groups[demo_agent.server, name] for name in demo_agent.skill_groups],
            )
            password = self._password(user, created or reset_passwords, DEMO_AGENT_PASSWORD)
            logins.append((demo_agent.username, password, f"agent on {demo_agent.server}"))
        return logins

    def _role_users(self, *, reset_passwords: bool) -> list[tuple[str, str, str]]:
        """One user per role (common/roles.py), named after it, password ``<role>-demo``; an
        existing one is given its role's group again and keeps its password."""
        logins = []
        for role in ROLES:
            user, created = user_ensure(username=role.key, first_name="Demo", last_name=role.group)
            user.groups.add(Group.objects.get(name=role.group))
            password = self._password(user, created or reset_passwords, f"{role.key}-demo")
            logins.append((role.key, password, f"{role.key} role"))
        return logins

    def _password(self, user: AbstractBaseUser, set_it: bool, demo_password: str) -> str:
        """Set and return the user's new password, or say it was left as it was."""
        if not set_it:
            return UNCHANGED
        # Outside DEBUG a documented password would be a known credential on a real host.
        password = demo_password if settings.DEBUG else secrets.token_urlsafe(12)
        user.set_password(password)
        user.save(update_fields=["password"])
        return password

    def _print_summary(self, logins: list[tuple[str, str, str]]) -> None:
        out = self.stdout
        out.write(self.style.SUCCESS("Demo data ready."))
        out.write("Log-ins (username / password):")
        for username, password, role in logins:
            out.write(f"  {username:<10} {password:<18} {role}")
        if any(password != UNCHANGED for _, password, _ in logins):
            if settings.DEBUG:
                out.write("DEBUG is on: these are the fixed demo passwords; never use them on a real host.")
            else:
                out.write(self.style.WARNING("These passwords are shown only once: note them now."))
        out.write(
            f"Servers: {Server.objects.count()}, peers: {Peer.objects.count()}, links: {Link.objects.count()}, "
            f"skill groups: {SkillGroup.objects.count()}, agents: {Agent.objects.count()}."
        )
