"""API token authentication: ``Authorization: Token <key>``, looked up by the key's hash.

The key itself is never stored (``failover.models.api_tokens``): the header's key is
hashed and the one row with that hash read, with its user, in one query. A revoked or
expired token is refused at once, with a message that says which, so the owner of a
script knows to make a new one rather than suspect the network.

Last use is recorded at most once a minute per token: every request of an integration
carries the token (hundreds a second for the caller API), and a write per request would
cost more than the request. The minute is checked on the row just read, so a request
within it writes nothing; past it, one conditional UPDATE (two nodes racing both write
nearly the same time, harmless).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import Q
from django.utils import timezone
from django.utils.formats import date_format
from rest_framework import authentication, exceptions

from common.client_address import client_ip
from failover.models import ApiToken
from failover.models.api_tokens import key_hash

LAST_USE_EVERY = timedelta(minutes=1)


class TokenRefused(exceptions.AuthenticationFailed):
    """Answered 401 with ``WWW-Authenticate: Token`` (common.api_conventions.exception_handler)."""

    www_authenticate = "Token"


def token_for_key(key: str) -> ApiToken:
    """The token of ``key`` with its user; ``AuthenticationFailed`` if it may not be used."""
    token = ApiToken.objects.select_related("user").filter(key_hash=key_hash(key)).first()
    if token is None:
        raise TokenRefused("Invalid token.")
    if token.revoked_at is not None:
        raise TokenRefused("Token revoked.")
    if token.is_expired():
        expired_on = date_format(timezone.localtime(token.expires_at), "Y-m-d H:i T")
        raise TokenRefused(f"Token expired on {expired_on}.")
    if not token.user.is_active:
        raise TokenRefused("User inactive or deleted.")
    return token


def record_use(token: ApiToken, address: str | None) -> None:
    """Note when and from where the token was last used, at most once a minute."""
    now = timezone.now()
    if token.last_used_at is not None and now - token.last_used_at < LAST_USE_EVERY:
        return
    ApiToken.objects.filter(pk=token.pk).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USE_EVERY)
    ).update(last_used_at=now, last_used_from=address)
    token.last_used_at, token.last_used_from = now, address


class ApiTokenAuthentication(authentication.TokenAuthentication):
    """DRF's header parsing (``Token <key>``, the same errors for a malformed header);
    ``request.auth`` is the :class:`ApiToken` (the API's rate limit counts per token id)."""

    def authenticate(self, request: Any) -> tuple[Any, ApiToken] | None:
        found = super().authenticate(request)
        if found is not None:
            record_use(found[1], client_ip(request))
        return found

    def authenticate_credentials(self, key: str) -> tuple[Any, ApiToken]:
        token = token_for_key(key)
        return token.user, token
