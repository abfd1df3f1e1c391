"""Making and revoking API tokens, audited.

Who may: any user with ``view_desktop`` for their own tokens, holders of
``manage_api_tokens`` for everyone's. A system actor (``manage.py create_api_token``, run
by an operator on the server) may make a token for any user: whoever runs commands there
can do more than that anyway.

A revoked token's open WebSockets are closed as soon as the revocation commits (the
``token-<id>`` group, ``common.live.close_token_sockets``); its HTTP requests are refused
from the commit on, since every request reads the token's row.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from common import live
from common.actors import Actor, user_of
from common.permissions import may
from common.roles import MANAGE_API_TOKENS, VIEW_DESKTOP
from failover.choices import AuditAction
from failover.models import ApiToken
from failover.models.api_tokens import SHOWN_PREFIX_CHARS, key_hash, new_key
from failover.services.audit import audit_record, check_reason

NAME_MAX = ApiToken._meta.get_field("name").max_length


def may_manage(actor: Actor, owner_id: int) -> bool:
    """Whether ``actor`` may make, see and revoke the tokens of user ``owner_id``."""
    user = user_of(actor)
    if user is None:
        return isinstance(actor, str)  # a system actor (an operator's command)
    if may(user, MANAGE_API_TOKENS):
        return True
    return user.pk == owner_id and may(user, VIEW_DESKTOP)


def tokens_visible_to(user: AbstractBaseUser) -> QuerySet[ApiToken]:
    """Everyone's tokens for a holder of ``manage_api_tokens``, else the user's own."""
    tokens = ApiToken.objects.select_related("user", "created_by", "revoked_by")
    return tokens if may(user, MANAGE_API_TOKENS) else tokens.filter(user=user)


def active_tokens(owner_id: int) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user_id=owner_id, revoked_at__isnull=True, expires_at__gt=timezone.now())


def _checked_name(name: str, owner_id: int) -> str:
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": "Give the token a name: what will use it (e.g. 'IVR integration')."})
    if len(name) > NAME_MAX:
        raise ValidationError({"name": f"At most {NAME_MAX} characters."})
    if active_tokens(owner_id).filter(name=name).exists():
        raise ValidationError({"name": f"This user already has an active token named '{name}'; pick another name."})
    return name


def _checked_days(days: Any) -> int:
    if days is None or days == "":
        return settings.API_TOKEN_DEFAULT_DAYS
    try:
        days = int(days)
    except (TypeError, ValueError):
        raise ValidationError({"days": "A whole number of days."}) from None
    if not 1 <= days <= settings.API_TOKEN_MAX_DAYS:
        raise ValidationError({"days": f"Between 1 and {settings.API_TOKEN_MAX_DAYS} days."})
    return days


@transaction.atomic
def token_create(*, user: AbstractBaseUser | int, name: str, days: Any = None, actor: Actor) -> tuple[ApiToken, str]:
    """Make a token for ``user``; returns it and its key, which exists nowhere else: the
    caller shows it once. ``days`` None: ``API_TOKEN_DEFAULT_DAYS``."""
    owner_id = user if isinstance(user, int) else user.pk
    if not may_manage(actor, owner_id):
        raise PermissionDenied("Your role allows managing your own API tokens only.")
    if not get_user_model().objects.filter(pk=owner_id).exists():
        raise ValidationError({"user": "No such user."})
    name, days = _checked_name(name, owner_id), _checked_days(days)
    key = new_key()
    now = timezone.now()
    token = ApiToken.objects.create(
        user_id=owner_id,
        name=name,
        key_prefix=key[:SHOWN_PREFIX_CHARS],
        key_hash=key_hash(key),
        created_at=now,
        created_by=user_of(actor),
        expires_at=now + timedelta(days=days),
    )
    audit_record(
        actor=actor,
        action=AuditAction.API_TOKEN_CREATED,
        target=token,
        after={
            "user_id": owner_id,
            "name": name,
            "prefix": token.key_prefix,
            "expires_at": token.expires_at.isoformat(),
        },
    )
    return token, key


@transaction.atomic
def token_revoke(*, token_id: int, actor: Actor, reason: str = "") -> ApiToken:
    """Revoke a token now: refused by the API from the commit on, its sockets closed."""
    reason = check_reason(reason)
    token = ApiToken.objects.select_for_update().filter(pk=token_id).first()
    if token is None:
        raise ValidationError({"token": "No such token."})
    if not may_manage(actor, token.user_id):
        raise PermissionDenied("Your role allows revoking your own API tokens only.")
    if token.revoked_at is not None:
        raise ValidationError({"token": "This token is already revoked."})
    token.revoked_at, token.revoked_by, token.revoke_reason = timezone.now(), user_of(actor), reason
    token.save(update_fields=["revoked_at", "revoked_by", "revoke_reason"])
    audit_record(
        actor=actor,
        action=AuditAction.API_TOKEN_REVOKED,
        target=token,
        reason=reason,
        before={"state": "active" if not token.is_expired() else "expired"},
        after={"state": "revoked"},
    )
    live.close_token_sockets(token.pk)
    return token
