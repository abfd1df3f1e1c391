"""API token authentication: ``Authorization: Token <key>``, looked up by the key's hash.

The key itself is never stored (``failover.models.api_tokens``): the header's key is
hashed and the one row with that hash read, with its user, in one plain query. A revoked or
expired token is refused at once, with a message that says which, so the owner of a
script knows to make a new one rather than suspect the network.

Last use is recorded at most once a minute per token: every request of an integration
carries the token (hundreds a second for the caller API), and a write per request would
cost more than the request. The minute is checked on the row just read, so a request
within it writes nothing; past it, one conditional UPDATE (two nodes racing both write
nearly the same time, harmless).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.formats import date_format
from rest_framework import authentication, exceptions

from common.client_address import client_ip
from failover.models import ApiToken
from failover.models.api_tokens import key_hash

LAST_USE_EVERY = timedelta(minutes=1)


class TokenRefused(exceptions.AuthenticationFailed):
    """Answered 401 with ``WWW-Authenticate: Token`` (common.api_conventions.exception_handler)."""

    www_authenticate = "Token"


def _moment(value: datetime | str | None) -> datetime | None:
    """A raw query's extra timestamp column as an aware datetime (SQLite gives text)."""
    moment = parse_datetime(value) if isinstance(value, str) else value
    if moment is not None and timezone.is_naive(moment):
        moment = timezone.make_aware(moment, UTC)
    return moment


def _token_with_user(digest: str) -> ApiToken | None:
    """The token of the hash and its user in one plain query.

    Every request of an integration runs this; building the equivalent ORM query cost more
    than running it (py-spy of ``POST /api/v1/sessions/``: 12 % of the web node, with DRF's
    ``Token.objects.select_related("user").get(key=…)``). The user is a full model instance;
    the token carries what authentication needs (id, expiry, revocation, last use).
    """
    user_model = get_user_model()
    user_table, user_pk = user_model._meta.db_table, user_model._meta.pk.column
    token_table, token_user = ApiToken._meta.db_table, ApiToken._meta.get_field("user").column
    # Only table and column names from the models are formatted in; the hash is a parameter.
    sql = (
        f"SELECT u.*, t.id AS api_token_id, t.expires_at AS api_token_expires_at,"  # noqa: S608
        f" t.revoked_at AS api_token_revoked_at, t.last_used_at AS api_token_last_used_at"
        f" FROM {user_table} u JOIN {token_table} t ON t.{token_user} = u.{user_pk} WHERE t.key_hash = %s"
    )
    user = next(iter(user_model.objects.raw(sql, [digest])), None)
    if user is None:
        return None
    return ApiToken(
        pk=user.api_token_id,
        user=user,
        key_hash=digest,
        expires_at=_moment(user.api_token_expires_at),
        revoked_at=_moment(user.api_token_revoked_at),
        last_used_at=_moment(user.api_token_last_used_at),
    )


def token_for_key(key: str) -> ApiToken:
    """The token of ``key`` with its user; ``AuthenticationFailed`` if it may not be used."""
    token = _token_with_user(key_hash(key))
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
