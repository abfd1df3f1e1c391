"""Log-ins, log-outs and lockouts in the audit history, beside every other action.

Django's ``user_logged_in``/``user_logged_out`` and django-axes' ``user_locked_out`` signals
are turned into audit entries (actor, time, address). Connected in ``FailoverConfig.ready``.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.http import HttpRequest

from common.client_address import client_ip
from failover.choices import AuditAction
from failover.services.audit import audit_record


def _over_http(request: HttpRequest | None) -> bool:
    """A log-in by a person comes with an HTTP request from an address. A session made in
    code (``Client.force_login``, a script) has none and is not a log-in worth auditing."""
    return request is not None and "REMOTE_ADDR" in request.META


def _where(request: HttpRequest | None) -> dict[str, Any]:
    if request is None:
        return {}
    return {"ip_address": client_ip(request), "path": request.path}


def logged_in(sender: object, request: HttpRequest | None, user: Any, **_: object) -> None:
    if _over_http(request):
        audit_record(actor=user, action=AuditAction.AUTH_LOGGED_IN, target=user, after=_where(request))


def logged_out(sender: object, request: HttpRequest | None, user: Any, **_: object) -> None:
    if user is not None and _over_http(request):  # logging out of an anonymous session is nothing
        audit_record(actor=user, action=AuditAction.AUTH_LOGGED_OUT, target=user, after=_where(request))


def locked_out(sender: object, request: HttpRequest, username: str | None, **_: object) -> None:
    """Recorded against the user name's account when there is one; an unknown name is only
    in axes' own failure log (an entry needs an object to point at)."""
    user = get_user_model().objects.filter(username=username).first() if username else None
    if user is not None:
        audit_record(
            actor=f"anonymous@{_where(request).get('ip_address') or 'unknown'}",
            action=AuditAction.AUTH_LOCKED_OUT,
            target=user,
            after=_where(request),
        )


def connect() -> None:
    from axes.signals import user_locked_out
    from django.contrib.auth.signals import user_logged_in, user_logged_out

    user_logged_in.connect(logged_in, dispatch_uid="failover.auth_audit.logged_in")
    user_logged_out.connect(logged_out, dispatch_uid="failover.auth_audit.logged_out")
    user_locked_out.connect(locked_out, dispatch_uid="failover.auth_audit.locked_out")
