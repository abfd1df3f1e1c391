"""Fail back after stable: never by default; with the policy, once the primary has been up long enough."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from failover.choices import AuditAction, FailoverKind, Health, LinkState
from failover.models import AuditEntry, FailoverEvent, Link, Peer, Policy
from failover.services.failback import links_fail_back
from failover.services.maintenance import peer_set_maintenance
from failover.services.switchover import link_switchover
from failover.tasks import fail_back
from tests.pairs import connected, set_health

pytestmark = pytest.mark.django_db

MINUTES = 5


def set_fail_back_after(minutes: int | None) -> None:
    Policy.objects.update_or_create(id=1, defaults={"fail_back_after_minutes": minutes})


@pytest.fixture
def on_secondary(mb_pair):
    """The primary failed (the secondary took over) and came back up just now."""
    link, primary, secondary = mb_pair
    set_health(primary, Health.DOWN)
    set_health(primary, Health.UP)
    assert connected(link) == ["mb-2"]
    primary.refresh_from_db()
    return link, primary, secondary


def minutes_after(peer: Peer, minutes: float):
    return peer.health_changed_at + timedelta(minutes=minutes)


def test_without_a_fail_back_policy_a_recovered_primary_stays_standby(on_secondary):
    link, primary, _ = on_secondary

    assert links_fail_back(now=minutes_after(primary, 24 * 60)) == []
    assert connected(link) == ["mb-2"]


def test_a_primary_up_for_less_than_the_policys_minutes_is_not_failed_back_to(on_secondary):
    link, primary, _ = on_secondary
    set_fail_back_after(MINUTES)

    assert links_fail_back(now=minutes_after(primary, MINUTES - 0.5)) == []
    assert connected(link) == ["mb-2"]


def test_a_primary_stable_for_the_policys_minutes_is_failed_back_to_with_an_event(on_secondary):
    link, primary, secondary = on_secondary
    set_fail_back_after(MINUTES)
    epoch = Link.objects.get(pk=link.pk).epoch

    (result,) = links_fail_back(now=minutes_after(primary, MINUTES))

    assert result.outcome == "switched"
    assert connected(link) == ["mb-1"]
    link.refresh_from_db()
    assert (link.state, link.epoch) == (LinkState.CONNECTED, epoch + 1)
    event = FailoverEvent.objects.get(kind=FailoverKind.FAILBACK)
    assert (event.from_peer, event.to_peer, event.epoch) == (secondary, primary, epoch + 1)
    assert event.reason == f"primary stable for {MINUTES} min"
    audit = AuditEntry.objects.filter(action=AuditAction.LINK_SWITCHOVER).first()
    assert (audit.actor_name, audit.after["connected"]) == ("system:failback", "mb-1")


def test_failing_back_twice_switches_only_once(on_secondary):
    link, primary, _ = on_secondary
    set_fail_back_after(MINUTES)
    later = minutes_after(primary, MINUTES + 1)

    assert len(links_fail_back(now=later)) == 1
    assert links_fail_back(now=later) == []
    assert FailoverEvent.objects.filter(kind=FailoverKind.FAILBACK).count() == 1


def test_a_primary_in_maintenance_is_not_failed_back_to(on_secondary, admin_user):
    link, primary, _ = on_secondary
    set_fail_back_after(MINUTES)
    peer_set_maintenance(peer_id=primary.pk, on=True, actor=admin_user, reason="firmware")

    assert links_fail_back(now=minutes_after(primary, MINUTES * 10)) == []
    assert connected(link) == ["mb-2"]


def test_a_primary_that_is_down_again_is_not_failed_back_to(on_secondary):
    link, primary, _ = on_secondary
    set_fail_back_after(MINUTES)
    set_health(primary, Health.DOWN)

    assert links_fail_back(now=timezone.now() + timedelta(minutes=MINUTES * 10)) == []
    assert connected(link) == ["mb-2"]


def test_a_link_already_on_its_primary_is_left_alone(mb_pair):
    link, primary, _ = mb_pair
    set_fail_back_after(MINUTES)
    primary.refresh_from_db()

    assert links_fail_back(now=minutes_after(primary, MINUTES * 10)) == []
    assert connected(link) == ["mb-1"]


def test_a_link_an_administrator_just_moved_to_the_secondary_gets_the_same_grace(mb_pair, admin_user):
    link, primary, _ = mb_pair
    set_fail_back_after(MINUTES)
    link_switchover(link_id=link.pk, actor=admin_user, reason="testing mb-2")
    switched_at = Link.objects.get(pk=link.pk).last_switchover_at

    assert links_fail_back(now=switched_at + timedelta(minutes=MINUTES - 1)) == []
    assert len(links_fail_back(now=switched_at + timedelta(minutes=MINUTES))) == 1
    assert connected(link) == ["mb-1"]


def test_the_fail_back_task_switches_back_and_reports_how_many(on_secondary):
    link, primary, _ = on_secondary
    set_fail_back_after(MINUTES)
    long_ago = timezone.now() - timedelta(minutes=MINUTES + 1)
    Peer.objects.filter(pk=primary.pk).update(health_changed_at=long_ago)
    Link.objects.filter(pk=link.pk).update(last_switchover_at=long_ago)

    assert fail_back.apply().get() == 1
    assert connected(link) == ["mb-1"]


def test_the_fail_back_task_is_quiet_when_there_is_nothing_to_do(on_secondary, caplog):
    caplog.set_level(logging.DEBUG, logger="failover")

    assert fail_back.apply().get() == 0
    # Celery's worker logs each task run itself; the task and its service add nothing.
    assert [record for record in caplog.records if record.name.startswith("failover")] == []


def test_the_fail_back_task_expires_instead_of_piling_up():
    assert fail_back.name == "failover.fail_back"
    assert (fail_back.time_limit, fail_back.soft_time_limit, fail_back.expires) == (30, 25, 25)
    assert fail_back.ignore_result is True
