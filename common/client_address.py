"""The address of the client behind a request, through the trusted proxies in front."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str | None:
    """The client's address for lockout counting (``AXES_CLIENT_IP_CALLABLE``).

    ``REMOTE_ADDR``, unless ``TRUSTED_PROXY_COUNT`` is N > 0: then N proxies in front each
    append to ``X-Forwarded-For`` and the client is the N-th address from the right
    (anything further left was sent by the client and is not trusted).
    """
    return address_behind_proxies(request.META.get("REMOTE_ADDR"), request.META.get("HTTP_X_FORWARDED_FOR", ""))


def address_behind_proxies(remote_addr: str | None, forwarded_for: str) -> str | None:
    """:func:`client_ip` from the peer's address and the ``X-Forwarded-For`` header (also
    for a WebSocket's ASGI scope, which has no ``request.META``)."""
    count = settings.TRUSTED_PROXY_COUNT
    if count:
        forwarded = [part.strip() for part in forwarded_for.split(",") if part.strip()]
        if len(forwarded) >= count:
            return forwarded[-count]
    return remote_addr
