"""The Administration desktop's wizards (``/console/wizards/``), for users with a role (each action its permission).

The page offers the four wizards for one server (``?server=``) and lists its recent runs;
a run's page (``/console/wizards/<id>/``) shows its step log and a progress bar, both
refreshed live by console.js as the Celery task runs the steps.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from common.roles import RUN_WIZARDS, VIEW_DESKTOP
from configsync.services import icm
from configsync.services.wizards import WizardRefused, added_agent, progress_percent, wizard_launch
from console.pages import read_reason, reason_refusal, render_console, requires_permission
from failover.choices import WizardKind
from failover.models import Policy, Server, WizardRun
from sessions.models import Agent, SkillGroup
from sessions.passwords import link_valid_days, set_password_path

RECENT_RUNS = 20


def selected_server(request: HttpRequest) -> tuple[Server | None, list[Server]]:
    """The server named by ``?server=`` (or the POSTed ``server``), else the first one."""
    servers = list(Server.objects.order_by("name"))
    raw = request.POST.get("server") or request.GET.get("server") or ""
    chosen = next((s for s in servers if str(s.pk) == raw), None)
    return chosen or (servers[0] if servers else None), servers


def _runs_context(runs: list[WizardRun]) -> list[WizardRun]:
    for run in runs:
        run.percent = progress_percent(run)
        run.steps_done = sum(1 for step in run.step_log if step["status"] == "done")
    return runs


def wizards_context(request: HttpRequest) -> dict[str, Any]:
    server, servers = selected_server(request)
    runs: list[WizardRun] = []
    agents: list[Agent] = []
    groups: list[SkillGroup] = []
    aw = None
    if server is not None:
        runs = list(WizardRun.objects.filter(server=server).select_related("started_by")[:RECENT_RUNS])
        agents = list(Agent.objects.filter(server=server).select_related("user").order_by("icm_id"))
        groups = list(SkillGroup.objects.filter(server=server).order_by("icm_id"))
        aw = icm.connected_admin_workstation(server.pk)
    return {
        "server": server,
        "servers": servers,
        "runs": _runs_context(runs),
        "agents": agents,
        "groups": groups,
        "aw": aw,
        "kinds": WizardKind.choices,
        "agent_slots": Policy.current().agent_max_sessions,
    }


@requires_permission(VIEW_DESKTOP)
@require_GET
def wizards_page(request: HttpRequest) -> HttpResponse:
    return render_console(request, "console/wizards.html", "console/_wizards.html", wizards_context(request))


def _params(request: HttpRequest, kind: str) -> dict[str, Any]:
    post = request.POST
    if kind == WizardKind.ADD_AGENT:
        return {
            "agent_id": post.get("agent_id", "").strip(),
            "name": post.get("name", "").strip(),
            "username": post.get("username", "").strip(),
            "skill_groups": post.getlist("skill_groups"),
            "enabled": post.get("enabled") == "1",
        }
    if kind == WizardKind.CHANGE_AGENT_SKILLS:
        return {"agent_id": post.get("agent_id", ""), "skill_groups": post.getlist("skill_groups")}
    if kind == WizardKind.REMOVE_AGENT:
        return {"agent_id": post.get("agent_id", "")}
    return {"skill_group_id": post.get("skill_group_id", "").strip(), "name": post.get("name", "").strip()}


@requires_permission(RUN_WIZARDS)
@require_POST
def wizard_start_view(request: HttpRequest) -> HttpResponse:
    server, _ = selected_server(request)
    back = reverse("console-wizards") + (f"?server={server.pk}" if server else "")
    kind = request.POST.get("kind", "")
    if server is None or kind not in WizardKind.values:
        messages.error(request, "Choose a server and one of the wizards.")
        return HttpResponseRedirect(back)
    label = WizardKind(kind).label
    reason = read_reason(request)
    if refusal := reason_refusal(reason):
        messages.error(request, f"{label}: not started, {refusal}")
        return HttpResponseRedirect(back)
    try:
        run = wizard_launch(
            server_id=server.pk, kind=kind, params=_params(request, kind), actor=request.user, reason=reason
        )
    except WizardRefused as refused:
        messages.error(request, f"{label}: not started. {' '.join(refused.messages)}")
        return HttpResponseRedirect(back)
    except ValidationError as invalid:
        messages.error(request, f"{label}: not started. {' '.join(invalid.messages)}")
        return HttpResponseRedirect(back)
    messages.success(request, f"{label} started on {server.name}.")
    return HttpResponseRedirect(reverse("console-wizard-run", args=[run.pk]))


def new_agent_login(request: HttpRequest, run: WizardRun) -> dict[str, Any] | None:
    """The log-in a completed add-agent run made, with the link its agent sets a password
    with (absent once the password is set): what the administrator hands the agent."""
    agent = added_agent(run)
    if agent is None:
        return None
    path = set_password_path(agent.user)
    return {
        "agent": agent,
        "username": agent.user.get_username(),
        "link": request.build_absolute_uri(path) if path else None,
        "valid_days": link_valid_days(),
    }


@requires_permission(VIEW_DESKTOP)
@require_GET
def wizard_run_page(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(WizardRun.objects.select_related("server", "started_by"), pk=run_id)
    _runs_context([run])
    context = {"run": run, "login": new_agent_login(request, run)}
    return render_console(request, "console/wizard_run.html", "console/_wizard_run.html", context)
