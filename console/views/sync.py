"""The Administration desktop's Verify and Sync (``/console/sync/``), for users with a role
(each action its permission).

One server at a time (``?server=``) and one of its runs (``?run=``, default its latest):
launch a verify, read the plan as a table, approve rows and choose each one's direction,
sync them (removals need the second confirmation, a checkbox the server insists on),
follow the progress live, read the report.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from common.roles import VERIFY_AND_SYNC, VIEW_DESKTOP
from configsync.services import icm
from configsync.services.sync import StalePlan, SyncRefused, removals, sync_launch, sync_plan_update
from configsync.services.verify import SyncBusy, busy_run, verify_launch
from console.pages import read_reason, reason_refusal, render_console, requires_permission
from console.views.wizards import selected_server
from failover.choices import SyncDirection, SyncRunState
from failover.models import Alert, SyncRun
from failover.peering import client

RECENT_RUNS = 10


def _percent(run: SyncRun) -> int:
    if run.state == SyncRunState.VERIFYING:
        return 0
    if not run.progress_total:
        return 100 if run.state in (SyncRunState.IN_SYNC, SyncRunState.COMPLETED) else 0
    return round(100 * run.progress_done / run.progress_total)


def sync_context(request: HttpRequest) -> dict[str, Any]:
    server, servers = selected_server(request)
    run = None
    runs: list[SyncRun] = []
    alert = None
    busy = None
    if server is not None:
        runs = list(SyncRun.objects.filter(server=server).select_related("started_by")[:RECENT_RUNS])
        raw = request.GET.get("run", "")
        run = next((r for r in runs if str(r.pk) == raw), None)
        if run is None and raw.isdigit():
            run = SyncRun.objects.filter(server=server, pk=int(raw)).select_related("started_by").first()
        run = run or (runs[0] if runs else None)
        alert = Alert.objects.filter(server=server, kind="config_out_of_sync", cleared_at__isnull=True).first()
        busy = busy_run(server.pk)
    if run is not None:
        run.percent = _percent(run)
        run.editable = run.state in (SyncRunState.PLANNED, SyncRunState.INTERRUPTED)
        run.removal_count = len(removals(run)) if run.editable else 0
        for row in run.plan:
            row["fix_text"] = row["fixes"][row["direction"]]["text"]
            row["removal"] = row["fixes"][row["direction"]]["removal"]
            # Each direction's option names its fix: the choice is clear without any script.
            row["options"] = [
                (
                    value,
                    f"{label}: {row['fixes'][value]['text']}"
                    + (" (deletes)" if row["fixes"][value]["removal"] else ""),
                )
                for value, label in SyncDirection.choices
            ]
    return {
        "server": server,
        "servers": servers,
        "aw_switching": icm.link_switching(server.pk) if server else False,
        "run": run,
        "runs": runs,
        "alert": alert,
        "busy": busy,
        "aw": icm.connected_admin_workstation(server.pk) if server else None,
        "directions": SyncDirection.choices,
    }


@requires_permission(VIEW_DESKTOP)
@require_GET
def sync_page(request: HttpRequest) -> HttpResponse:
    return render_console(request, "console/sync.html", "console/_sync.html", sync_context(request))


def _page(server_id: int, run_id: int | None = None) -> HttpResponseRedirect:
    query = f"?server={server_id}" + (f"&run={run_id}" if run_id else "")
    return HttpResponseRedirect(reverse("console-sync") + query)


@requires_permission(VERIFY_AND_SYNC)
@require_POST
def sync_verify_view(request: HttpRequest) -> HttpResponse:
    server, _ = selected_server(request)
    if server is None:
        messages.error(request, "No server to verify.")
        return HttpResponseRedirect(reverse("console-sync"))
    try:
        run = verify_launch(server_id=server.pk, actor=request.user)
    except SyncBusy as busy:
        messages.error(request, f"Verify not started: {busy}")
        return _page(server.pk, busy.busy.pk if busy.busy else None)
    messages.info(request, f"Verify of {server.name} started: comparing it with the ICM.")
    return _page(server.pk, run.pk)


@requires_permission(VERIFY_AND_SYNC)
@require_POST
def sync_run_view(request: HttpRequest) -> HttpResponse:
    """Save the approvals and directions of the plan (run ``run``), and (``do=sync``) start the sync.

    The run is a field, not part of the URL: the form lives outside the plan's live region
    (so a refresh never re-masks its CSRF token and wipes the ticks being made).
    """
    raw = request.POST.get("run", "")
    run = get_object_or_404(SyncRun.objects.select_related("server"), pk=int(raw) if raw.isdigit() else 0)
    approved = set(request.POST.getlist("approve"))
    changes = []
    for row in run.plan:
        change: dict[str, Any] = {"id": row["id"], "approved": row["id"] in approved}
        direction = request.POST.get(f"direction:{row['id']}")
        if direction:
            change["direction"] = direction
        changes.append(change)
    try:
        sync_plan_update(run_id=run.pk, rows=changes, actor=request.user)
    except (SyncRefused, ValidationError) as refused:
        text = " ".join(refused.messages) if isinstance(refused, ValidationError) else str(refused)
        messages.error(request, f"Plan not changed: {text}")
        return _page(run.server_id, run.pk)
    if request.POST.get("do") != "sync":
        messages.success(request, f"Approvals saved: {len(approved)} row{'s' if len(approved) != 1 else ''} approved.")
        return _page(run.server_id, run.pk)
    reason = read_reason(request)
    if not reason:
        messages.error(request, "Sync not started: say why in the reason field (it goes to the audit history).")
        return _page(run.server_id, run.pk)
    if refusal := reason_refusal(reason):
        messages.error(request, f"Sync not started: {refusal}")
        return _page(run.server_id, run.pk)
    try:
        sync_launch(
            run_id=run.pk,
            actor=request.user,
            confirm_deletions=request.POST.get("confirm_deletions") == "1",
            reason=reason,
        )
    except StalePlan as stale:
        messages.error(request, f"Sync refused: {stale}")
    except SyncBusy as busy:
        messages.error(request, f"Sync refused: {busy}")
    except SyncRefused as refused:
        messages.error(request, f"Sync refused: {refused}")
    except ValidationError as invalid:
        messages.error(request, f"Sync not started: {' '.join(invalid.messages)}")
    except client.PeerUnavailable as exc:
        messages.error(request, f"Sync not started: the ICM cannot be reached to check the plan ({exc}).")
    else:
        messages.info(request, "Sync started: the approved rows are being applied.")
    return _page(run.server_id, run.pk)
