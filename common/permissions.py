"""Who may use the administrators' part of the REST API: staff users.

Anonymous requests never get this far: DRF answers them "not authenticated" before any
permission is evaluated. The agents' side is the sessions app's (``sessions/permissions.py``).
"""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request


def is_staff(user: Any) -> bool:
    """An authenticated staff user. ``user`` may be None (``UNAUTHENTICATED_USER`` is None)."""
    return bool(user is not None and user.is_authenticated and user.is_staff)


class IsStaff(BasePermission):
    """The administrators' console: staff users only."""

    message = "Only administrators (staff users) may use this endpoint."

    def has_permission(self, request: Request, view: Any) -> bool:
        return is_staff(request.user)
