"""factory_boy factories for the domain model; they go through the services where one exists."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from failover.choices import PeerKind, PeerPriority, ServerRole
from failover.models import Peer, Server
from failover.services.topology import peer_ensure, server_ensure
from sessions.models import Agent, CollaborationSession, SkillGroup

PASSWORD = "correct-horse-battery-staple"


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
