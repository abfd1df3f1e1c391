"""Facts peers report about themselves."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from common import live
from failover.choices import IcmSide
from failover.models import Link, Peer
from failover.services.link_alerts import link_alerts_reconcile
from failover.services.switchover import lock_link


@transaction.atomic
def peer_record_icm_side(*, peer_id: int, side: IcmSide) -> bool:
    """Store which ICM side a Media Blender is connected to (read when its connection
    opens, then pushed on every change); True if the side changed.

    A connected Media Blender that reports no side raises the *Media Blender without ICM*
    alert, cleared when it reports one again (failover/services/link_alerts.py).
    """
    peer = Peer.objects.only("server_id", "kind").get(pk=peer_id)
    link = lock_link(Link.objects.values_list("pk", flat=True).get(server_id=peer.server_id, kind=peer.kind))
    # Link first, then the peer (the switchovers' lock order); read again under the lock.
    before = Peer.objects.values("icm_side", "icm_side_reported_at").get(pk=peer_id)
    changed = before["icm_side"] != side
    Peer.objects.filter(pk=peer_id).update(icm_side=side, icm_side_reported_at=timezone.now())
    if changed or before["icm_side_reported_at"] is None:
        # The overview shows "unknown" until the first report, so that one is news too.
        live.publish("peer.icm_side", {"peer": peer_id, "icm_side": side})
    link_alerts_reconcile(link)
    return bool(changed)
