"""Wizards and Verify and Sync under /api/v1/ (issue 6): serializers and views, each
operation for its permission (common.roles).

* ``/wizards/``: start a wizard (it runs in a Celery task), read a run with its step log.
* ``/sync-runs/``: launch a verify, read the plan, its progress and the report, approve rows
  and choose their direction (``approve``), start the sync (``sync``).

Errors: 400 for bad input (including removals without ``confirm_deletions``), 409 when the
state refuses (another run in progress, a stale plan, a run not waiting for a sync, no
Admin Workstation connected), 503 when the ICM cannot be read to check the plan.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from common.api_conventions import (
    CONFLICT,
    MAX_ID,
    NOT_ALLOWED,
    NOT_FOUND,
    UNAVAILABLE,
    VALIDATION_ERROR,
    Conflict,
    Pagination,
    ServiceUnavailable,
    django_error_text,
)
from common.api_schema import ApiSchema
from common.permissions import requires
from common.roles import RUN_WIZARDS, VERIFY_AND_SYNC
from configsync.services.sync import StalePlan, SyncRefused, sync_launch, sync_plan_update
from configsync.services.verify import SyncBusy, verify_launch
from configsync.services.wizards import WizardRefused, added_agent, progress_percent, wizard_launch
from failover.choices import SyncDirection, SyncRunState, WizardKind, WizardState
from failover.models import Server, SyncRun, WizardRun
from failover.peering import client
from sessions.passwords import set_password_path

# --- Serializers -------------------------------------------------------------------------------


class WizardStepSerializer(serializers.Serializer):
    target = serializers.ChoiceField(choices=[("local", "This server"), ("icm", "The ICM")])
    action = serializers.CharField()
    title = serializers.CharField()
    args = serializers.DictField()
    status = serializers.ChoiceField(
        choices=[("pending", "Pending"), ("done", "Done"), ("failed", "Failed"), ("interrupted", "Interrupted")]
    )
    message = serializers.CharField(allow_blank=True)
    at = serializers.DateTimeField(required=False)


class WizardRunSerializer(serializers.ModelSerializer):
    server_name = serializers.CharField(source="server.name", read_only=True)
    set_password_link = serializers.SerializerMethodField(
        help_text="add_agent, once completed: the link with which the new agent chooses a password "
        "(Django's password-reset token: works once, expires); null once the password is set."
    )
    started_by = serializers.CharField(source="started_by.username", read_only=True, allow_null=True, default=None)
    step_log = WizardStepSerializer(many=True, read_only=True)
    steps_total = serializers.SerializerMethodField()
    percent = serializers.SerializerMethodField()

    class Meta:
        model = WizardRun
        fields = [
            "id",
            "server",
            "server_name",
            "kind",
            "state",
            "started_by",
            "started_at",
            "finished_at",
            "params",
            "current_step",
            "steps_total",
            "percent",
            "step_log",
            "aw_epoch",
            "error",
            "set_password_link",
        ]
        read_only_fields = fields

    def get_set_password_link(self, run: WizardRun) -> str | None:
        agent = added_agent(run)
        path = set_password_path(agent.user) if agent is not None else None
        request = self.context.get("request")
        return request.build_absolute_uri(path) if path and request is not None else path

    def get_steps_total(self, run: WizardRun) -> int:
        return len(run.step_log)

    def get_percent(self, run: WizardRun) -> int:
        return progress_percent(run)


class WizardStartSerializer(serializers.Serializer):
    server = serializers.PrimaryKeyRelatedField(queryset=Server.objects.all())
    kind = serializers.ChoiceField(choices=WizardKind.choices)
    params = serializers.DictField(
        help_text="add_agent: agent_id, name, skill_groups (ids), enabled, username. "
        "change_agent_skills: agent_id, skill_groups (the full new list). remove_agent: agent_id. "
        "add_skill_group: skill_group_id, name."
    )
    reason = serializers.CharField(max_length=300, help_text="Why; kept in the audit history.")

    def validate_params(self, params: dict[str, Any]) -> dict[str, Any]:
        # Free-form JSON, so DRF's CharField check does not reach inside: a NUL character in
        # a name went on to the database, which PostgreSQL refuses (a 500 instead of a 400).
        if _has_null_character(params):
            raise serializers.ValidationError("Null characters are not allowed.")
        return params


def _has_null_character(value: Any) -> bool:
    """Whether any string in ``value`` (JSON: keys and values, nested) contains a NUL."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_null_character(key) or _has_null_character(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_null_character(item) for item in value)
    return False


class PlanFixSerializer(serializers.Serializer):
    op = serializers.CharField()
    text = serializers.CharField()
    removal = serializers.BooleanField(help_text="Deletes something: needs confirm_deletions.")


class PlanRowResultSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=[("done", "Done"), ("failed", "Failed")])
    message = serializers.CharField(allow_blank=True)
    at = serializers.DateTimeField()


class PlanRowSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="kind:key, e.g. agent:ann or membership:ann:sales.")
    kind = serializers.ChoiceField(
        choices=[
            ("skill_group", "Skill group"),
            ("agent", "Agent"),
            ("membership", "Membership"),
            ("agent_enabled", "Agent enabled"),
        ]
    )
    summary = serializers.CharField()
    local = serializers.CharField(help_text="What this server has.")
    icm = serializers.CharField(help_text="What the ICM has.")
    data = serializers.DictField()
    fixes = serializers.DictField(child=PlanFixSerializer(), help_text="The fix in each direction.")
    direction = serializers.ChoiceField(choices=SyncDirection.choices)
    approved = serializers.BooleanField()
    result = PlanRowResultSerializer(allow_null=True)


class SyncRunSerializer(serializers.ModelSerializer):
    server_name = serializers.CharField(source="server.name", read_only=True)
    started_by = serializers.CharField(source="started_by.username", read_only=True, allow_null=True, default=None)
    plan = PlanRowSerializer(many=True, read_only=True)
    report = serializers.DictField(read_only=True)

    class Meta:
        model = SyncRun
        fields = [
            "id",
            "server",
            "server_name",
            "state",
            "started_by",
            "started_at",
            "finished_at",
            "icm_version",
            "local_fingerprint",
            "aw_epoch",
            "progress_done",
            "progress_total",
            "plan",
            "report",
            "error",
        ]
        read_only_fields = fields


class VerifyRequestSerializer(serializers.Serializer):
    server = serializers.PrimaryKeyRelatedField(queryset=Server.objects.all())


class RowApprovalSerializer(serializers.Serializer):
    id = serializers.CharField()
    approved = serializers.BooleanField(required=False)
    direction = serializers.ChoiceField(choices=SyncDirection.choices, required=False)


class ApproveRequestSerializer(serializers.Serializer):
    rows = RowApprovalSerializer(many=True, allow_empty=False)


class SyncRequestSerializer(serializers.Serializer):
    confirm_deletions = serializers.BooleanField(
        default=False, help_text="The second confirmation, required when an approved row deletes something."
    )


class RunFilterSerializer(serializers.Serializer):
    server = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID, source="server_id")


class WizardFilterSerializer(RunFilterSerializer):
    state = serializers.ChoiceField(required=False, choices=WizardState.choices)


class SyncRunFilterSerializer(RunFilterSerializer):
    state = serializers.ChoiceField(required=False, choices=SyncRunState.choices)


# --- Views -------------------------------------------------------------------------------------


class _Filtered:
    filter_serializer_class: type[serializers.Serializer]

    def filter_queryset(self, queryset: Any) -> Any:
        queryset = super().filter_queryset(queryset)  # type: ignore[misc]
        if self.action == "list":  # type: ignore[attr-defined]
            data = {k: v for k, v in self.request.query_params.items() if v != ""}  # type: ignore[attr-defined]
            body = self.filter_serializer_class(data=data)
            body.is_valid(raise_exception=True)
            queryset = queryset.filter(**body.validated_data)
        return queryset


@extend_schema_view(
    list=extend_schema(summary="Wizard runs, newest first", parameters=[WizardFilterSerializer]),
    retrieve=extend_schema(summary="A wizard run with its step log and progress"),
)
class WizardRunViewSet(_Filtered, mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Administrative wizards: add an agent, change an agent's skill groups, remove an agent,
    add a skill group; each writes this server's database and the ICM step by step."""

    schema = ApiSchema()
    serializer_class = WizardRunSerializer
    filter_serializer_class = WizardFilterSerializer
    pagination_class = Pagination
    queryset = WizardRun.objects.select_related("server", "started_by").order_by("-started_at", "-id")

    @extend_schema(
        summary="Start a wizard",
        description="Validated at once (400 with one message per parameter); the steps then run in a "
        "Celery task: poll the run, or follow `wizard.changed` on the status WebSocket. 409 while the "
        "server has no Admin Workstation connected.",
        request=WizardStartSerializer,
        responses={201: WizardRunSerializer, 400: VALIDATION_ERROR, 403: NOT_ALLOWED, 409: CONFLICT},
    )
    @requires(RUN_WIZARDS)
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        body = WizardStartSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            run = wizard_launch(
                server_id=data["server"].pk,
                kind=data["kind"],
                params=data["params"],
                actor=request.user,
                reason=data["reason"],
            )
        except WizardRefused as refused:
            raise Conflict(django_error_text(refused)) from refused
        body = WizardRunSerializer(self.get_queryset().get(pk=run.pk), context=self.get_serializer_context())
        return Response(body.data, status=status.HTTP_201_CREATED)


def _busy(error: SyncBusy) -> Conflict:
    return Conflict(str(error), busy_run=error.busy.pk if error.busy else None)


@extend_schema_view(
    list=extend_schema(summary="Verify and Sync runs, newest first", parameters=[SyncRunFilterSerializer]),
    retrieve=extend_schema(summary="A run: its plan, progress and report"),
)
class SyncRunViewSet(_Filtered, mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Verify and Sync: compare this server with the ICM, approve the fixes, apply them."""

    schema = ApiSchema()
    serializer_class = SyncRunSerializer
    filter_serializer_class = SyncRunFilterSerializer
    pagination_class = Pagination
    queryset = SyncRun.objects.select_related("server", "started_by").order_by("-started_at", "-id")

    @extend_schema(
        summary="Launch a verify",
        description="Read-only comparison of agents, skill groups, memberships and enabled state, run in a "
        "Celery task; the run ends `in_sync` or `planned` (its plan lists the differences). "
        "409 while another run of the server is verifying or syncing (`busy_run`).",
        request=VerifyRequestSerializer,
        responses={202: SyncRunSerializer, 400: VALIDATION_ERROR, 403: NOT_ALLOWED, 409: CONFLICT},
    )
    @requires(VERIFY_AND_SYNC)
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        body = VerifyRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            run = verify_launch(server_id=body.validated_data["server"].pk, actor=request.user)
        except SyncBusy as busy:
            raise _busy(busy) from busy
        return Response(SyncRunSerializer(self.get_queryset().get(pk=run.pk)).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="Approve plan rows and choose their direction",
        request=ApproveRequestSerializer,
        responses={200: SyncRunSerializer, 400: VALIDATION_ERROR, 403: NOT_ALLOWED, 404: NOT_FOUND, 409: CONFLICT},
    )
    @requires(VERIFY_AND_SYNC)
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str | None = None) -> Response:
        """Each row named is set as given (`approved`, `direction`: `from_icm`, the default, or
        `to_icm`); rows not named keep their setting. 409 once the run is no longer planned."""
        run = self.get_object()
        body = ApproveRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            sync_plan_update(run_id=run.pk, rows=body.validated_data["rows"], actor=request.user)
        except SyncRefused as refused:
            raise Conflict(str(refused)) from refused
        return Response(SyncRunSerializer(self.get_queryset().get(pk=run.pk)).data)

    @extend_schema(
        summary="Sync the approved rows",
        description="Applies exactly the approved rows in a Celery task (progress in `progress_done` / "
        "`progress_total`, each row's `result`, then `report`). 400 when nothing is approved or when an "
        "approved row deletes something and `confirm_deletions` is not true. 409 when the plan is stale "
        "(`stale: true`: run a new verify), another run is in progress, or the run is not planned. "
        "503 when the ICM cannot be reached to check the plan.",
        request=SyncRequestSerializer,
        responses={
            202: SyncRunSerializer,
            400: VALIDATION_ERROR,
            403: NOT_ALLOWED,
            404: NOT_FOUND,
            409: CONFLICT,
            503: OpenApiResponse(response=UNAVAILABLE.response, description=UNAVAILABLE.description),
        },
    )
    @requires(VERIFY_AND_SYNC)
    @action(detail=True, methods=["post"])
    def sync(self, request: Request, pk: str | None = None) -> Response:
        run = self.get_object()
        body = SyncRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            sync_launch(run_id=run.pk, actor=request.user, confirm_deletions=body.validated_data["confirm_deletions"])
        except StalePlan as stale:
            raise Conflict(str(stale), stale=True) from stale
        except SyncBusy as busy:
            raise _busy(busy) from busy
        except SyncRefused as refused:
            raise Conflict(str(refused)) from refused
        except client.PeerUnavailable as exc:
            raise ServiceUnavailable(f"The ICM cannot be read to check the plan: {exc}", retry_after=5) from exc
        return Response(SyncRunSerializer(self.get_queryset().get(pk=run.pk)).data, status=status.HTTP_202_ACCEPTED)
