"""Switchover rules: automatic, both down, non-preemptive, manual, stale epochs, maintenance."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from failover.choices import AuditAction, FailoverKind, Health, LinkState, PeerKind, PeerPriority
from failover.models import AuditEntry, FailoverEvent, Link
from failover.services.maintenance import peer_set_maintenance
from failover.services.switchover import SwitchoverRefused, link_switchover
from tests.factories import PeerFactory
from tests.pairs import connected, set_health

pytestmark = pytest.mark.django_db


def test_the_first_peer_to_come_up_is_connected(mb_pair):
    link, primary, _ = mb_pair
    link.refresh_from_db()

    assert connected(link) == ["mb-1"]
    assert link.state == LinkState.CONNECTED
    assert link.epoch == 1


def test_when_the_connected_peer_fails_the_other_is_connected_with_a_higher_epoch(mb_pair):
    link, primary, secondary = mb_pair
    failed_at = timezone.now() - timedelta(milliseconds=300)

    result = set_health(primary, Health.DOWN, failed_at=failed_at, error="connection reset")

    link.refresh_from_db()
    assert result.outcome == "switched"
    assert connected(link) == ["mb-2"]
    assert link.epoch == 2
    secondary.refresh_from_db()
    assert secondary.connected_epoch == 2
    event = FailoverEvent.objects.get(kind=FailoverKind.AUTOMATIC)
    assert (event.from_peer, event.to_peer) == (primary, secondary)
    assert event.failed_at == failed_at
    assert event.detection_seconds == pytest.approx(0.3, abs=0.25)
    assert event.switchover_seconds is not None
    assert event.switchover_seconds >= 0
    audit = AuditEntry.objects.filter(action=AuditAction.LINK_SWITCHOVER).first()
    assert audit.before["connected"] == "mb-1"
    assert audit.after["connected"] == "mb-2"
    assert audit.actor_name == "system:monitor"


def test_a_repeated_health_report_changes_nothing(mb_pair):
    link, primary, _ = mb_pair
    set_health(primary, Health.DOWN)
    events = FailoverEvent.objects.count()

    assert set_health(primary, Health.DOWN) is None
    assert FailoverEvent.objects.count() == events


def test_both_down_leaves_the_link_down_and_the_first_back_is_connected(mb_pair):
    link, primary, secondary = mb_pair
    set_health(primary, Health.DOWN)
    set_health(secondary, Health.DOWN)
    link.refresh_from_db()
    assert link.state == LinkState.DOWN
    assert connected(link) == []
    assert FailoverEvent.objects.filter(kind=FailoverKind.LINK_DOWN).count() == 1
    restored_before = FailoverEvent.objects.filter(kind=FailoverKind.LINK_RESTORED).count()

    result = set_health(secondary, Health.UP)

    link.refresh_from_db()
    assert result.outcome == "restored"
    assert connected(link) == ["mb-2"]
    assert link.state == LinkState.CONNECTED
    assert FailoverEvent.objects.filter(kind=FailoverKind.LINK_RESTORED).count() == restored_before + 1


def test_a_recovered_primary_stays_standby(mb_pair):
    link, primary, _ = mb_pair
    set_health(primary, Health.DOWN)

    result = set_health(primary, Health.UP)

    assert result.outcome == "unchanged"
    assert connected(link) == ["mb-2"]


def test_an_administrator_switches_back_by_hand_with_a_reason(mb_pair, admin_user):
    link, primary, _ = mb_pair
    set_health(primary, Health.DOWN)
    set_health(primary, Health.UP)

    result = link_switchover(link_id=link.pk, actor=admin_user, reason="primary repaired")

    assert result.outcome == "switched"
    assert connected(link) == ["mb-1"]
    event = FailoverEvent.objects.get(kind=FailoverKind.MANUAL)
    assert event.actor == admin_user
    assert event.reason == "primary repaired"
    assert AuditEntry.objects.filter(actor=admin_user, action=AuditAction.LINK_SWITCHOVER).exists()


def test_a_manual_switchover_needs_a_reason_and_a_healthy_target(mb_pair, admin_user):
    link, _, secondary = mb_pair

    with pytest.raises(SwitchoverRefused, match="reason"):
        link_switchover(link_id=link.pk, actor=admin_user, reason="  ")
    set_health(secondary, Health.DOWN)
    with pytest.raises(SwitchoverRefused, match="not healthy"):
        link_switchover(link_id=link.pk, actor=admin_user, reason="try")
    assert connected(link) == ["mb-1"]


def test_a_switchover_carrying_a_stale_epoch_changes_nothing(mb_pair, admin_user):
    link, _, _ = mb_pair
    link.refresh_from_db()
    seen_epoch = link.epoch
    link_switchover(link_id=link.pk, actor=admin_user, reason="first", expected_epoch=seen_epoch)

    late = link_switchover(link_id=link.pk, actor=admin_user, reason="second", expected_epoch=seen_epoch)

    assert late.outcome == "stale"
    assert connected(link) == ["mb-2"]
    assert Link.objects.get(pk=link.pk).epoch == seen_epoch + 1


def test_switching_to_the_connected_peer_is_a_no_op(mb_pair, admin_user):
    link, primary, _ = mb_pair

    result = link_switchover(link_id=link.pk, actor=admin_user, reason="again", to_peer_id=primary.pk)

    assert result.outcome == "unchanged"
    assert FailoverEvent.objects.filter(kind=FailoverKind.MANUAL).count() == 0


def test_maintenance_drains_the_connected_peer_and_release_reconnects_a_down_link(mb_pair, admin_user):
    link, primary, secondary = mb_pair

    drained = peer_set_maintenance(peer_id=primary.pk, on=True, actor=admin_user, reason="firmware upgrade")

    assert drained.event.kind == FailoverKind.MAINTENANCE
    assert connected(link) == ["mb-2"]
    primary.refresh_from_db()
    assert primary.in_maintenance
    assert primary.maintenance_reason == "firmware upgrade"

    peer_set_maintenance(peer_id=secondary.pk, on=True, actor=admin_user, reason="both")
    link.refresh_from_db()
    assert link.state == LinkState.DOWN

    restored = peer_set_maintenance(peer_id=primary.pk, on=False, actor=admin_user, reason="done")
    assert restored.outcome == "restored"
    assert connected(link) == ["mb-1"]
    assert AuditEntry.objects.filter(action=AuditAction.PEER_MAINTENANCE_ON).count() == 2
    assert AuditEntry.objects.filter(action=AuditAction.PEER_MAINTENANCE_OFF).count() == 1


def test_a_peer_in_maintenance_is_never_chosen_even_when_healthy(mb_pair, admin_user):
    link, primary, secondary = mb_pair
    peer_set_maintenance(peer_id=secondary.pk, on=True, actor=admin_user, reason="spare out")

    set_health(primary, Health.DOWN)

    link.refresh_from_db()
    assert link.state == LinkState.DOWN
    assert connected(link) == []


def test_at_first_start_the_link_waits_for_the_primarys_first_verdict(server):
    primary = PeerFactory(server=server, kind=PeerKind.MEDIA_BLENDER, priority=PeerPriority.PRIMARY, name="p")
    secondary = PeerFactory(server=server, kind=PeerKind.MEDIA_BLENDER, priority=PeerPriority.SECONDARY, name="s")
    link = Link.objects.get(server=server, kind=PeerKind.MEDIA_BLENDER)

    set_health(secondary, Health.UP)
    assert connected(link) == []

    set_health(primary, Health.UP)
    assert connected(link) == ["p"]


def test_at_first_start_a_dead_primary_lets_the_secondary_connect(server):
    primary = PeerFactory(server=server, kind=PeerKind.MEDIA_BLENDER, priority=PeerPriority.PRIMARY, name="p")
    secondary = PeerFactory(server=server, kind=PeerKind.MEDIA_BLENDER, priority=PeerPriority.SECONDARY, name="s")
    link = Link.objects.get(server=server, kind=PeerKind.MEDIA_BLENDER)
    set_health(secondary, Health.UP)

    set_health(primary, Health.DOWN)

    assert connected(link) == ["s"]
