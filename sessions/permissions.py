"""Who may use the agents' part of the desktop and the REST API.

Role holders own the console endpoints (``common/permissions.py``); agents use the few
endpoints of their own desktop, where each view narrows its queryset to the agent's own
rows. An agent never gets a role holder's rights by being an agent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.exceptions import ObjectDoesNotExist
from rest_framework.request import Request

from common.permissions import HasRolePermission

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


class RoleHolderOrAgent(HasRolePermission):
    """A holder of the declared permission (as everywhere in the API), or an enabled agent;
    the view must narrow an agent to its own rows (:class:`sessions.api.views.OwnRowsMixin`)
    and check anything an agent may do only to its own rows."""

    message = "Only agents and users whose role allows it may use this endpoint."

    def has_permission(self, request: Request, view: Any) -> bool:
        if super().has_permission(request, view) or agent_of(request.user) is not None:
            return True
        self.message = type(self).message  # not the role holders' message: agents come here too
        return False
