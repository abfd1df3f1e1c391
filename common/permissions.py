"""Who may use the administrators' part of the REST API: the holder of a role permission.

Every endpoint declares the permission it needs with :func:`requires` (on the view method,
the viewset action, or the class for all of them); :class:`HasRolePermission`, DRF's
default permission class, checks it with ``user.has_perm``, never ``is_staff``. What an
endpoint does not declare: reading needs ``view_desktop``, writing is refused to everyone
but superusers, so a new endpoint without a declaration cannot open a hole (and the
generated role test names it).

Anonymous requests never get this far: DRF answers them "not authenticated" before any
permission is evaluated. The agents' side is the sessions app's (``sessions/permissions.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from django.contrib.auth import get_user_model
from django.db.models import Q
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from common.roles import VIEW_DESKTOP, Permission

Declared = TypeVar("Declared")

# The attribute `requires` sets; read by HasRolePermission, console.pages and the tests.
REQUIRED_PERMISSION = "required_permission"


def requires(permission: Permission) -> Callable[[Declared], Declared]:
    """Declare the permission a view, view method or viewset action needs."""

    def declare(target: Declared) -> Declared:
        setattr(target, REQUIRED_PERMISSION, permission)
        return target

    return declare


def may(user: Any, permission: Permission) -> bool:
    """An active, authenticated user holding ``permission`` (a superuser holds them all).
    ``user`` may be None (``UNAUTHENTICATED_USER`` is None)."""
    return bool(user is not None and user.is_authenticated and user.is_active and user.has_perm(permission.name))


def declared_permission(view: Any, request: Request) -> Permission | None:
    """The permission the handler of this request declared: the action's (viewsets), the
    method handler's (APIView), else the view class's; None when nothing declares one."""
    handler_name = getattr(view, "action", None) or request.method.lower()
    handler = getattr(view, handler_name, None)
    return getattr(handler, REQUIRED_PERMISSION, None) or getattr(view, REQUIRED_PERMISSION, None)


class HasRolePermission(BasePermission):
    """The declared permission; undeclared: reads need view_desktop, writes a superuser."""

    message = "Your role does not allow this."

    def has_permission(self, request: Request, view: Any) -> bool:
        permission = declared_permission(view, request)
        if permission is None and request.method in SAFE_METHODS:
            permission = VIEW_DESKTOP
        if permission is not None:
            # One instance per request (DRF's get_permissions), so the message may name it.
            self.message = f"Your role does not allow this (it needs: {permission.description.lower()})."
            return may(request.user, permission)
        return bool(request.user is not None and request.user.is_active and request.user.is_superuser)


def users_who_may(permission: Permission, user_ids: Iterable[int]) -> set[int]:
    """Those of ``user_ids`` for whom :func:`may` holds, in one query: active, and a
    superuser or holding ``permission`` themselves or through a group (the rules of Django's
    ``ModelBackend``, the one backend that grants permissions here; a test holds the two to
    the same answers). For re-checking many open sockets at once (console/consumers.py)."""
    app_label, codename = permission.name.split(".", 1)
    own = Q(user_permissions__codename=codename, user_permissions__content_type__app_label=app_label)
    by_group = Q(groups__permissions__codename=codename, groups__permissions__content_type__app_label=app_label)
    users = get_user_model().objects.filter(pk__in=list(user_ids), is_active=True)
    return set(users.filter(Q(is_superuser=True) | own | by_group).values_list("pk", flat=True).distinct())
