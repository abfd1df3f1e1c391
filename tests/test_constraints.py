"""Correctness lives in the database: these writes bypass every service and model check,
and the database itself must refuse them (on PostgreSQL in CI, and on SQLite)."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from failover.choices import AlertKind, PeerConnection, PeerKind, PeerPriority, SyncRunState
from failover.models import Alert, Link, Peer, Policy, SyncRun
from sessions.choices import AgentState, EndReason, SessionState
from sessions.models import CollaborationSession
from tests.factories import AgentFactory, PeerFactory, SessionFactory

pytestmark = pytest.mark.django_db


def refused(write) -> bool:
    try:
        with transaction.atomic():
            write()
    except IntegrityError:
        return True
    return False


@pytest.fixture
def pair(server):
    primary = PeerFactory(server=server, kind=PeerKind.MEDIA_BLENDER, priority=PeerPriority.PRIMARY)
    secondary = PeerFactory(server=server, kind=PeerKind.MEDIA_BLENDER, priority=PeerPriority.SECONDARY)
    return primary, secondary


def connect(peer: Peer, epoch: int = 1) -> None:
    Peer.objects.filter(pk=peer.pk).update(connection=PeerConnection.CONNECTED, connected_epoch=epoch)


def test_the_database_refuses_a_second_connected_peer_in_a_pair(pair):
    primary, secondary = pair
    connect(primary)

    assert refused(lambda: connect(secondary, epoch=2))
    assert Peer.objects.filter(connection=PeerConnection.CONNECTED).count() == 1


def test_one_connected_peer_per_pair_still_allows_one_in_each_pair(server, pair):
    primary, _ = pair
    workstation = PeerFactory(server=server, kind=PeerKind.ADMIN_WORKSTATION, priority=PeerPriority.PRIMARY)
    connect(primary)

    assert not refused(lambda: connect(workstation))


def test_a_pair_has_no_third_peer(server, pair):
    assert refused(
        lambda: Peer.objects.create(server=server, kind=PeerKind.MEDIA_BLENDER, name="third", port=1, priority=3)
    )
    assert refused(
        lambda: Peer.objects.create(
            server=server, kind=PeerKind.MEDIA_BLENDER, name="dup", port=1, priority=PeerPriority.PRIMARY
        )
    )


def test_a_connected_peer_cannot_be_in_maintenance_or_lack_an_epoch(pair):
    primary, _ = pair

    assert refused(lambda: Peer.objects.filter(pk=primary.pk).update(connection=PeerConnection.CONNECTED))
    connect(primary)
    assert refused(lambda: Peer.objects.filter(pk=primary.pk).update(in_maintenance=True))


def test_a_server_has_one_link_per_kind(server):
    assert refused(lambda: Link.objects.create(server=server, kind=PeerKind.MEDIA_BLENDER))


def test_an_ended_session_needs_a_reason_and_a_time_and_an_open_one_has_neither(server):
    session = SessionFactory(server=server)
    rows = CollaborationSession.objects.filter(pk=session.pk)

    assert refused(lambda: rows.update(state=SessionState.ENDED))
    assert refused(lambda: rows.update(state=SessionState.ENDED, end_reason=EndReason.CALLER_LEFT))
    assert refused(lambda: rows.update(end_reason=EndReason.CALLER_LEFT))
    assert not refused(
        lambda: rows.update(state=SessionState.ENDED, end_reason=EndReason.CALLER_LEFT, ended_at=timezone.now())
    )


def test_a_routed_session_needs_an_agent(server):
    session = SessionFactory(server=server)
    rows = CollaborationSession.objects.filter(pk=session.pk)

    assert refused(lambda: rows.update(state=SessionState.IN_TRANSIT))
    assert refused(lambda: rows.update(state=SessionState.ACTIVE))
    agent = AgentFactory(server=server)
    assert not refused(lambda: rows.update(state=SessionState.IN_TRANSIT, agent=agent))


def test_a_disabled_agent_cannot_be_logged_in(server):
    agent = AgentFactory(server=server, state=AgentState.READY)

    assert refused(lambda: type(agent).objects.filter(pk=agent.pk).update(enabled=False))


def test_one_open_alert_per_kind_and_server(server):
    def raise_alert():
        Alert.objects.create(server=server, kind=AlertKind.CONFIG_OUT_OF_SYNC, message="m", raised_at=timezone.now())

    raise_alert()
    assert refused(raise_alert)
    Alert.objects.update(cleared_at=timezone.now())
    assert not refused(raise_alert)


def test_one_busy_verify_and_sync_run_per_server(server):
    def start_run():
        SyncRun.objects.create(server=server, state=SyncRunState.VERIFYING, started_at=timezone.now())

    start_run()
    assert refused(start_run)
    SyncRun.objects.update(state=SyncRunState.IN_SYNC, finished_at=timezone.now())
    assert not refused(start_run)


def test_the_policy_is_a_single_row():
    Policy.current()

    assert refused(lambda: Policy.objects.create(id=2))
    assert Policy.current().pk == 1
