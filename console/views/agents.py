"""The Administration desktop's agents page (``/console/agents/``) and its action.

Every agent with its state, server, skill groups, open sessions and log-in time, filtered by
server and state, 50 a page; an administrator forces a logged-in agent out with a reason.
The log-out goes through ``agent_logout`` (locks, audits, publishes, tells the Media
Blender); the agent's open sessions stay as they are (docs/product.md, 'Caller hung up').
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.db.models import Count, Prefetch, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET, require_POST

from common.roles import LOG_OUT_AGENTS, VIEW_DESKTOP
from console.pages import (
    paginate,
    read_reason,
    reason_refusal,
    redirect_back,
    render_console,
    requires_permission,
    wants_fragment,
)
from console.views.filters import choice_param, id_param, server_options
from sessions.choices import AgentState, LogoutReason, SessionState
from sessions.models import Agent, SkillGroup
from sessions.services.lifecycle import agent_logout


def agent_rows(*, state: str, server_id: int | None) -> QuerySet[Agent]:
    """The filtered agents by server and name, each with its open sessions counted and its
    skill groups: two queries a page whatever the number of agents and sessions."""
    rows = (
        Agent.objects.select_related("server", "user")
        .prefetch_related(Prefetch("skill_groups", queryset=SkillGroup.objects.order_by("name")))
        .annotate(open_sessions=Count("sessions", filter=~Q(sessions__state=SessionState.ENDED)))
        .order_by("server__name", "user__username", "id")
    )
    if state:
        rows = rows.filter(state=state)
    if server_id is not None:
        rows = rows.filter(server_id=server_id)
    return rows


@requires_permission(VIEW_DESKTOP)
@require_GET
def agents_page(request: HttpRequest) -> HttpResponse:
    filters = {"state": choice_param(request, "state", AgentState.values), "server": id_param(request, "server")}
    page = paginate(request, agent_rows(state=filters["state"], server_id=filters["server"]))
    page.object_list = list(page.object_list)
    context: dict[str, Any] = {
        "page": page,
        "filters": filters,
        "filtered": any(value not in ("", None) for value in filters.values()),
    }
    if not wants_fragment(request):  # the filter form is outside the live fragment
        context |= {"state_options": AgentState.choices, "servers": server_options()}
    return render_console(request, "console/agents.html", "console/_agents.html", context)


@requires_permission(LOG_OUT_AGENTS)
@require_POST
def agent_logout_view(request: HttpRequest, agent_id: int) -> HttpResponse:
    """Force an agent out (``admin_forced``). An agent already logged out is left alone."""
    agent = Agent.objects.select_related("user").filter(pk=agent_id).first()
    if agent is None:
        messages.error(request, "That agent does not exist (any more); nothing was done.")
        return redirect_back(request, "console-agents")
    name = agent.display_name
    reason = read_reason(request)
    if refusal := reason_refusal(reason):
        messages.error(request, f"Log-out of {name} not done: {refusal}")
        return redirect_back(request, "console-agents")
    if agent.state == AgentState.LOGGED_OUT:
        messages.warning(request, f"{name} is already logged out; nothing was done.")
        return redirect_back(request, "console-agents")
    agent_logout(agent_id=agent.pk, actor=request.user, reason=LogoutReason.ADMIN_FORCED, note=reason)
    messages.success(request, f"{name} has been logged out. Their open sessions stay as they are.")
    return redirect_back(request, "console-agents")
