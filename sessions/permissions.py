"""Who may use the agents' part of the desktop and the REST API.

Administrators (staff users) own the console endpoints (``common/permissions.py``);
agents use the few endpoints of their own desktop, where each view narrows its queryset
to the agent's own rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.exceptions import ObjectDoesNotExist
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from common.permissions import is_staff

if TYPE_CHECKING:
    from sessions.models import Agent


def agent_of(user: Any) -> Agent | None:
    """The enabled agent behind ``user``, or None.

    A disabled agent is refused like a non-agent: the database already insists it cannot
    be logged in, so its desktop endpoints should not answer either.
    """
    if user is None or not user.is_authenticated:
        return None
    try:
        agent = user.agent  # cached on the user object after the first access
    except ObjectDoesNotExist:
        return None
    return agent if agent.enabled else None


class IsStaffOrAgent(BasePermission):
    """Staff, or an enabled agent; the view must narrow an agent to its own rows."""

    message = "Only administrators and agents may use this endpoint."

    def has_permission(self, request: Request, view: Any) -> bool:
        return is_staff(request.user) or agent_of(request.user) is not None
