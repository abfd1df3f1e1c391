"""factory_boy factories for the domain model; they go through the services where one exists."""

from __future__ import annotations

import uuid

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

from common.roles import Role
from failover.choices import (
    AlertKind,
    AuditAction,
    FailoverKind,
    LinkState,
    PeerConnection,
    PeerKind,
    PeerPriority,
    ServerRole,
    SyncRunState,
    WizardKind,
    WizardState,
)
from failover.models import Alert, AuditEntry, FailoverEvent, Link, Peer, Server, SyncRun, WizardRun
from failover.services.api_tokens import token_create
from failover.services.topology import peer_ensure, server_ensure
from sessions.models import Agent, CollaborationSession, SkillGroup

PASSWORD = "correct-horse-battery-staple"


def api_key(user, *, name: str | None = None, days: int | None = None) -> str:
    """A new API token of ``user`` (through the service, as ``manage.py create_api_token``
    makes one); returns its key, the only place it exists in clear."""
    name = name or f"tests-{uuid.uuid4().hex[:8]}"
    return token_create(user=user, name=name, days=days, actor="system:tests")[1]


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.test")
    password = factory.django.Password(PASSWORD)


class StaffFactory(UserFactory):
    username = factory.Sequence(lambda n: f"admin{n}")
    is_staff = True
    is_superuser = True


def role_user(role: Role, **fields: object) -> object:
    """A user holding ``role`` through its group (as an operator assigns it in the Django
    admin), neither staff nor superuser."""
    user = UserFactory(**fields)
    user.groups.add(Group.objects.get(name=role.group))
    return user


class ServerFactory(factory.django.DjangoModelFactory):
    """A server with both links, made by the same service the product uses."""

    class Meta:
        model = Server

    name = factory.Sequence(lambda n: f"server-{n}")
    role = ServerRole.ROUTING

    @classmethod
    def _create(cls, model_class: type[Server], *args: object, **kwargs: object) -> Server:
        return server_ensure(**kwargs)


class PeerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Peer

    server = factory.SubFactory(ServerFactory)
    kind = PeerKind.MEDIA_BLENDER
    priority = PeerPriority.PRIMARY
    name = factory.LazyAttributeSequence(lambda peer, n: f"{peer.kind.replace('_', '-')}-{n}")
    host = "127.0.0.1"
    port = factory.Sequence(lambda n: 20000 + n)

    @classmethod
    def _create(cls, model_class: type[Peer], *args: object, **kwargs: object) -> Peer:
        return peer_ensure(**kwargs)


class SkillGroupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SkillGroup

    server = factory.SubFactory(ServerFactory)
    icm_id = factory.Sequence(lambda n: f"SG{n:04d}")
    name = factory.Sequence(lambda n: f"Skill group {n}")


class AgentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Agent

    user = factory.SubFactory(UserFactory)
    server = factory.SubFactory(ServerFactory)
    icm_id = factory.Sequence(lambda n: f"A{n:05d}")


class SessionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CollaborationSession

    server = factory.SubFactory(ServerFactory)
    caller_name = factory.Faker("name")
    caller_contact = factory.Faker("email")
    queued_at = factory.LazyFunction(timezone.now)
    skill_group = None
    # A session without a skill group is one whose caller asked for any agent.
    any_skill_group = factory.LazyAttribute(lambda session: session.skill_group is None)


class AlertFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Alert

    server = factory.SubFactory(ServerFactory)
    kind = AlertKind.LINK_DOWN
    message = "Media Blender link down"
    raised_at = factory.LazyFunction(timezone.now)


class FailoverEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = FailoverEvent

    server = factory.SubFactory(ServerFactory)
    kind = FailoverKind.AUTOMATIC
    detected_at = factory.LazyFunction(timezone.now)


def peer_mark_connected(peer: Peer, *, epoch: int = 1) -> Peer:
    """Make ``peer`` its pair's connected peer and its link connected at ``epoch``.

    A direct row update for test set-up only (the switchover service is the real way);
    it respects the constraints: the other peer of the pair goes standby first.
    """
    now = timezone.now()
    pair = Peer.objects.filter(server_id=peer.server_id, kind=peer.kind)
    pair.exclude(pk=peer.pk).update(connection=PeerConnection.STANDBY, connected_epoch=None, connected_at=None)
    pair.filter(pk=peer.pk).update(
        connection=PeerConnection.CONNECTED, connected_epoch=epoch, connected_at=now, in_maintenance=False
    )
    Link.objects.filter(server_id=peer.server_id, kind=peer.kind).update(
        state=LinkState.CONNECTED, epoch=epoch, state_changed_at=now, last_switchover_at=now
    )
    peer.refresh_from_db()
    return peer


class AuditEntryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AuditEntry

    actor_name = "system:poller"
    action = AuditAction.LINK_SWITCHOVER
    object_type = "failover.link"
    object_id = factory.Sequence(str)
    object_repr = factory.Sequence(lambda n: f"server-{n} Media Blender link")
    reason = "Primary stopped answering"


class WizardRunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = WizardRun

    server = factory.SubFactory(ServerFactory)
    kind = WizardKind.ADD_AGENT
    state = WizardState.COMPLETED
    started_by = factory.SubFactory(StaffFactory)
    started_at = factory.LazyFunction(timezone.now)
    finished_at = factory.LazyFunction(timezone.now)


class SyncRunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SyncRun

    server = factory.SubFactory(ServerFactory)
    state = SyncRunState.IN_SYNC
    started_by = factory.SubFactory(StaffFactory)
    started_at = factory.LazyFunction(timezone.now)
    finished_at = factory.LazyFunction(timezone.now)
