"""Database leases: at most one holder of a named job at a time, with a fencing epoch.

Compare-and-set updates only: whoever's UPDATE matches the "expired or mine" condition
holds the lease; the database serialises the competitors.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from failover.models import Lease


@dataclass(frozen=True)
class LeaseToken:
    name: str
    holder: str
    epoch: int


def lease_acquire(*, name: str, holder: str, ttl_seconds: float) -> LeaseToken | None:
    """Take the lease if it is free or expired (raising its epoch), or renew it if ours.

    Returns the token to present on renewal and on fenced writes, or None when another
    holder's lease is still valid.
    """
    now = timezone.now()
    expires = now + timedelta(seconds=ttl_seconds)
    try:
        with transaction.atomic():
            Lease.objects.get_or_create(name=name)
    except IntegrityError:
        pass  # Another node created it at the same moment; the row exists either way.
    mine = Lease.objects.filter(name=name, holder=holder, expires_at__gt=now).update(expires_at=expires, renewed_at=now)
    if not mine:
        free = Q(expires_at__isnull=True) | Q(expires_at__lte=now) | Q(holder="")
        taken = Lease.objects.filter(free, name=name).update(
            holder=holder, epoch=F("epoch") + 1, expires_at=expires, renewed_at=now, holder_late_ms=0
        )
        if not taken:
            return None
    epoch = Lease.objects.values_list("epoch", flat=True).get(name=name)
    return LeaseToken(name=name, holder=holder, epoch=epoch)


def lease_renew(*, token: LeaseToken, ttl_seconds: float, late_ms: float | None = None) -> bool:
    """Extend our lease; False if it expired and someone else (or a new epoch) took it.

    ``late_ms``: how late the holder's event loop ran at worst lately, kept on the row for
    ``/metrics`` (a monitor running late sets probe time-outs aside and detects slowly).
    """
    now = timezone.now()
    figures = {} if late_ms is None else {"holder_late_ms": late_ms}
    return bool(
        Lease.objects.filter(name=token.name, holder=token.holder, epoch=token.epoch, expires_at__gt=now).update(
            expires_at=now + timedelta(seconds=ttl_seconds), renewed_at=now, **figures
        )
    )


def lease_release(*, token: LeaseToken) -> None:
    """Give the lease up at once (clean shutdown) so a survivor need not wait for expiry."""
    Lease.objects.filter(name=token.name, holder=token.holder, epoch=token.epoch).update(expires_at=None, holder="")


def lease_is_held(token: LeaseToken) -> bool:
    """Inside a transaction: lock the lease row and check the token is still current.

    Fenced writers call this first, so a monitor that was paused past its lease (and
    replaced) cannot write once it wakes up.
    """
    return (
        Lease.objects.select_for_update()
        .filter(name=token.name, holder=token.holder, epoch=token.epoch, expires_at__gt=timezone.now())
        .exists()
    )
