"""Facts peers report about themselves."""

from __future__ import annotations

from django.db import transaction

from common import live
from failover.choices import IcmSide
from failover.models import Peer


@transaction.atomic
def peer_record_icm_side(*, peer_id: int, side: IcmSide) -> bool:
    """Store which ICM side a Media Blender is connected to; True if it changed."""
    changed = Peer.objects.filter(pk=peer_id).exclude(icm_side=side).update(icm_side=side)
    if changed:
        live.publish("peer.icm_side", {"peer": peer_id, "icm_side": side})
    return bool(changed)
