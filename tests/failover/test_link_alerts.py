"""Every loss of redundancy is an alert (issue 19, point 1): the rule of
failover/services/link_alerts.py, driven through the services that change a pair.

The real-process version (simulators killed, a monitor deciding) is
tests/failover/test_link_alerts_live.py; here the services are called as the monitor and
the desktop call them, to pin each transition down.
"""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from common.actors import MONITOR
from failover.choices import AlertKind, AlertSeverity, AuditAction, Health, IcmSide, PeerKind, PeerPriority
from failover.models import Alert, AuditEntry, Link
from failover.services.alerts import alert_raise
from failover.services.link_alerts import link_alerts_implied
from failover.services.maintenance import peer_set_maintenance
from failover.services.peers import peer_record_icm_side
from failover.services.switchover import link_switchover
from tests.factories import PeerFactory, StaffFactory
from tests.pairs import set_health

pytestmark = pytest.mark.django_db


def open_alerts(link: Link) -> dict[str, Alert]:
    return {alert.kind: alert for alert in Alert.objects.filter(link=link, cleared_at__isnull=True)}


def test_a_pair_coming_up_raises_nothing(server):
    primary = PeerFactory(server=server, kind=PeerKind.MEDIA_BLENDER, priority=PeerPriority.PRIMARY, name="mb-1")
    secondary = PeerFactory(server=server, kind=PeerKind.MEDIA_BLENDER, priority=PeerPriority.SECONDARY, name="mb-2")
    link = Link.objects.get(server=server, kind=PeerKind.MEDIA_BLENDER)

    set_health(primary, Health.UP)
    set_health(secondary, Health.UP)

    assert not Alert.objects.exists()
    assert link_alerts_implied(link, list(link.peers())) == {}


def test_a_standby_down_loses_redundancy_and_its_return_clears_it(mb_pair):
    link, _, secondary = mb_pair

    set_health(secondary, Health.DOWN)

    (alert,) = open_alerts(link).values()
    assert alert.kind == AlertKind.REDUNDANCY_LOST
    assert alert.severity == AlertSeverity.WARNING
    assert alert.server == link.server
    assert alert.message == "Media Blender pair without redundancy: standby mb-2 down"
    assert AuditEntry.objects.filter(
        action=AuditAction.ALERT_RAISED, object_type="failover.alert", object_id=str(alert.pk)
    ).exists()

    set_health(secondary, Health.UP)

    alert.refresh_from_db()
    assert alert.cleared_at is not None
    assert alert.clear_reason == "both peers healthy and out of maintenance"
    assert open_alerts(link) == {}


def test_no_healthy_peer_is_link_down_and_the_first_peer_back_clears_it(mb_pair):
    link, primary, secondary = mb_pair
    set_health(secondary, Health.DOWN)

    set_health(primary, Health.DOWN)

    alerts = open_alerts(link)
    assert set(alerts) == {AlertKind.LINK_DOWN, AlertKind.REDUNDANCY_LOST}
    assert alerts[AlertKind.LINK_DOWN].severity == AlertSeverity.CRITICAL
    assert alerts[AlertKind.LINK_DOWN].message == "Media Blender link down: no healthy peer (mb-1 down, mb-2 down)"
    # Still without redundancy while down: one alert each, the message says why.
    assert alerts[AlertKind.REDUNDANCY_LOST].message == "Media Blender pair without redundancy: mb-1 down, mb-2 down"

    set_health(secondary, Health.UP)

    down = Alert.objects.get(pk=alerts[AlertKind.LINK_DOWN].pk)
    assert down.cleared_at is not None
    assert down.clear_reason == "mb-2 connected"
    assert set(open_alerts(link)) == {AlertKind.REDUNDANCY_LOST}
    assert open_alerts(link)[AlertKind.REDUNDANCY_LOST].pk == alerts[AlertKind.REDUNDANCY_LOST].pk

    set_health(primary, Health.UP)

    assert open_alerts(link) == {}


def test_maintenance_of_the_standby_loses_redundancy_of_both_takes_the_link_down(mb_pair):
    link, primary, secondary = mb_pair
    admin = StaffFactory()

    peer_set_maintenance(peer_id=secondary.pk, on=True, actor=admin, reason="patching mb-2")

    (alert,) = open_alerts(link).values()
    assert alert.kind == AlertKind.REDUNDANCY_LOST
    assert alert.message == "Media Blender pair without redundancy: standby mb-2 in maintenance"
    raised = AuditEntry.objects.get(
        action=AuditAction.ALERT_RAISED, object_type="failover.alert", object_id=str(alert.pk)
    )
    # The system raises it; the administrator's maintenance is audited beside it.
    assert raised.actor_name == "system:monitor"
    assert AuditEntry.objects.filter(action=AuditAction.PEER_MAINTENANCE_ON, actor=admin).exists()

    # Draining the connected one too: the link goes down in the same transaction.
    peer_set_maintenance(peer_id=primary.pk, on=True, actor=admin, reason="patching mb-1")

    assert set(open_alerts(link)) == {AlertKind.LINK_DOWN, AlertKind.REDUNDANCY_LOST}

    peer_set_maintenance(peer_id=secondary.pk, on=False, actor=admin, reason="done")
    assert set(open_alerts(link)) == {AlertKind.REDUNDANCY_LOST}
    peer_set_maintenance(peer_id=primary.pk, on=False, actor=admin, reason="done")
    assert open_alerts(link) == {}


def test_draining_the_connected_peer_leaves_the_pair_without_redundancy(mb_pair):
    link, primary, _ = mb_pair

    peer_set_maintenance(peer_id=primary.pk, on=True, actor=StaffFactory(), reason="patching mb-1")

    (alert,) = open_alerts(link).values()
    assert alert.message == "Media Blender pair without redundancy: standby mb-1 in maintenance"


def test_both_links_of_a_server_down_are_two_alerts(server):
    for kind in PeerKind.values:
        peer = PeerFactory(server=server, kind=kind, priority=PeerPriority.PRIMARY, name=f"{kind}-1")
        set_health(peer, Health.UP)
        set_health(peer, Health.DOWN)

    down = Alert.objects.filter(server=server, kind=AlertKind.LINK_DOWN, cleared_at__isnull=True)

    assert sorted(down.values_list("link__kind", flat=True)) == sorted(PeerKind.values)
    # A pair of one never had redundancy to lose.
    assert not Alert.objects.filter(kind=AlertKind.REDUNDANCY_LOST).exists()


def test_the_database_allows_one_open_alert_per_link_and_kind(mb_pair):
    link = mb_pair[0]
    alert_raise(
        server=link.server, link=link, kind=AlertKind.LINK_DOWN, message="x", severity="critical", actor=MONITOR
    )

    with pytest.raises(IntegrityError), transaction.atomic():
        Alert.objects.create(
            server=link.server, link=link, kind=AlertKind.LINK_DOWN, message="y", raised_at=timezone.now()
        )


def test_the_connected_media_blender_without_icm_is_a_critical_alert(mb_pair):
    link, primary, secondary = mb_pair
    peer_record_icm_side(peer_id=primary.pk, side=IcmSide.A)
    assert open_alerts(link) == {}

    peer_record_icm_side(peer_id=primary.pk, side=IcmSide.NONE)

    (alert,) = open_alerts(link).values()
    assert alert.kind == AlertKind.MB_WITHOUT_ICM
    assert alert.severity == AlertSeverity.CRITICAL
    assert alert.message == "Media Blender mb-1 reports no ICM connection (side A or B)"

    peer_record_icm_side(peer_id=primary.pk, side=IcmSide.B)

    alert.refresh_from_db()
    assert alert.clear_reason == "mb-1 on ICM side B"
    assert open_alerts(link) == {}


def test_only_the_connected_media_blender_counts_and_switching_to_one_without_icm_raises_it(mb_pair):
    link, primary, secondary = mb_pair
    peer_record_icm_side(peer_id=primary.pk, side=IcmSide.A)
    peer_record_icm_side(peer_id=secondary.pk, side=IcmSide.NONE)
    assert open_alerts(link) == {}

    link_switchover(link_id=link.pk, actor=StaffFactory(), reason="move to mb-2", to_peer_id=secondary.pk)

    assert set(open_alerts(link)) == {AlertKind.MB_WITHOUT_ICM}

    link_switchover(link_id=link.pk, actor=StaffFactory(), reason="back to mb-1", to_peer_id=primary.pk)

    assert open_alerts(link) == {}


def test_a_side_never_reported_since_the_mb_came_up_is_unknown_not_none(mb_pair):
    """Before the side is read (or after the MB went down) a blank side raises nothing."""
    link, primary, secondary = mb_pair
    peer_record_icm_side(peer_id=primary.pk, side=IcmSide.NONE)
    assert set(open_alerts(link)) == {AlertKind.MB_WITHOUT_ICM}

    set_health(primary, Health.DOWN)  # mb-2 takes over; mb-1's side is forgotten
    primary.refresh_from_db()
    assert primary.icm_side_reported_at is None

    set_health(secondary, Health.DOWN)
    set_health(primary, Health.UP)  # mb-1 reconnected, side not read yet

    assert AlertKind.MB_WITHOUT_ICM not in open_alerts(link)
