"""Fail back after stable (docs/product.md, 'Failing back'): the optional, preemptive half of the policy.

By default a recovered primary stays standby (non-preemptive). With
``Policy.fail_back_after_minutes`` set, a link left on its secondary is switched back to
its primary once the primary has been healthy, out of maintenance and unchanged for that
many minutes. Runs periodically (the ``failover.fail_back`` task); safe to run twice and
on several workers at once, because every switch goes through ``link_switchover`` with
the epoch read here (a link someone else switched in between is left alone).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from common.actors import FAILBACK
from failover.choices import FailoverKind, Health, PeerConnection, PeerPriority
from failover.models import Link, Peer, Policy
from failover.services.switchover import SwitchoverRefused, SwitchoverResult, link_switchover, lock_link

logger = logging.getLogger(__name__)


def _stable_primaries(stable_since: datetime) -> QuerySet[Peer]:
    """Primaries healthy and out of maintenance, with no health change since ``stable_since``."""
    return Peer.objects.filter(
        priority=PeerPriority.PRIMARY,
        health=Health.UP,
        in_maintenance=False,
        health_changed_at__lte=stable_since,
    )


def links_to_fail_back(*, stable_since: datetime) -> QuerySet[Link]:
    """Links connected to their secondary while their primary is stable since ``stable_since``.

    A link switched less than the same time ago is left alone too: an administrator who
    just moved it to the secondary by hand gets the same grace as a recovering primary.
    Annotated with ``primary_id``.
    """
    pair = {"server_id": OuterRef("server_id"), "kind": OuterRef("kind")}
    secondary_connected = Peer.objects.filter(
        **pair, priority=PeerPriority.SECONDARY, connection=PeerConnection.CONNECTED
    )
    primary = _stable_primaries(stable_since).filter(**pair)
    return (
        Link.objects.filter(Exists(secondary_connected), Exists(primary))
        .filter(Q(last_switchover_at__isnull=True) | Q(last_switchover_at__lte=stable_since))
        .annotate(primary_id=primary.values("pk")[:1])
        .order_by("pk")
    )


def links_fail_back(*, now: datetime | None = None) -> list[SwitchoverResult]:
    """Switch every link that qualifies back to its primary; return the switchovers made.

    Nothing happens while the policy's ``fail_back_after_minutes`` is empty (the default).
    Each switch is a ``failback`` failover event and an audit entry by ``system:failback``,
    in its own transaction, so one link's refusal does not hold back the others. Links
    that changed since they were read (epoch moved, primary flapped or went into
    maintenance) are skipped silently; the next run looks again.
    """
    minutes = Policy.current().fail_back_after_minutes
    if minutes is None:
        return []
    stable_since = (now or timezone.now()) - timedelta(minutes=minutes)
    results = []
    for link_id, epoch, primary_id in links_to_fail_back(stable_since=stable_since).values_list(
        "pk", "epoch", "primary_id"
    ):
        result = _fail_back(
            link_id=link_id,
            epoch=epoch,
            primary_id=primary_id,
            stable_since=stable_since,
            reason=f"primary stable for {minutes} min",
        )
        if result is not None:
            results.append(result)
    return results


@transaction.atomic
def _fail_back(
    *, link_id: int, epoch: int, primary_id: int, stable_since: datetime, reason: str
) -> SwitchoverResult | None:
    lock_link(link_id)
    # Re-checked under the link's lock: a primary that flapped since the scan (its health
    # changed, the epoch did not, because it was standby) is not stable any more.
    if not _stable_primaries(stable_since).filter(pk=primary_id).exists():
        return None
    try:
        result = link_switchover(
            link_id=link_id,
            actor=FAILBACK,
            reason=reason,
            to_peer_id=primary_id,
            expected_epoch=epoch,
            kind=FailoverKind.FAILBACK,
        )
    except SwitchoverRefused:
        logger.info("fail back of link %s refused", link_id, exc_info=True)
        return None
    return result if result.changed else None
