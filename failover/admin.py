"""The Django admin of the failover app: configuration for configurers, history to read.

Thin by design: every save goes through a service with a required reason and is audited
with before/after (docs/operations.md, "The Django admin"):

- a server (name, role, base URL, description): ``server_configure``, which also makes
  sure both links exist; its peers' addresses: ``peer_configure``, ``peer_remove`` (a
  connected peer is neither deleted nor moved to the other pair), their maintenance:
  ``peer_set_maintenance`` (drains a connected peer), all with the server form's reason.
  Deleting a server is not offered: its sessions, failovers and audit history refer to it.
- the policy: ``policy_update``.
- notification channels: ``notification_channel_save`` / ``notification_channel_delete``
  (the webhook secret is never written into the audit history).

Runtime state (health, connection, link state, epochs) is shown but never edited here,
because only the failover services may change it (with their locks and fencing). The
history models are written by the services alone, so the admin only shows them.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.urls import reverse
from rest_framework.authtoken.models import TokenProxy

from failover.choices import AlertKind, PeerConnection
from failover.models import (
    Alert,
    AuditEntry,
    FailoverEvent,
    Lease,
    Link,
    NodeHeartbeat,
    NotificationChannel,
    NotificationDelivery,
    Peer,
    Policy,
    Server,
    ServerSilence,
    SyncRun,
    WizardRun,
)
from failover.models.health import PROBE_FIELDS
from failover.services.audit import REASON_MAX
from failover.services.maintenance import peer_set_maintenance
from failover.services.notification_channels import (
    CHANNEL_FIELDS,
    notification_channel_delete,
    notification_channel_save,
)
from failover.services.notifications import notification_test
from failover.services.policy import EDITABLE_FIELDS as EDITABLE_POLICY_FIELDS
from failover.services.policy import policy_update
from failover.services.topology import PEER_FIELDS, SERVER_FIELDS, peer_configure, peer_remove, server_configure


def links_with_connected_peer(queryset: QuerySet[Link]) -> QuerySet[Link]:
    """Annotate ``connected_peer_name`` in the same query (no query per row)."""
    connected = Peer.objects.filter(
        server_id=OuterRef("server_id"), kind=OuterRef("kind"), connection=PeerConnection.CONNECTED
    )
    return queryset.annotate(connected_peer_name=Subquery(connected.values("name")[:1]))


@admin.display(description="connected peer")
def connected_peer(link: Link) -> str:
    return getattr(link, "connected_peer_name", None) or "—"


class ReadOnlyAdminMixin:
    """Shown, never added, changed or deleted here (no "delete selected" action either)."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# --- Servers, peers, links ---------------------------------------------------------------


class PeerInlineForm(forms.ModelForm):
    class Meta:
        model = Peer
        fields = (*PEER_FIELDS, "in_maintenance")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        # ``connection`` is read-only here, so Django skips the database constraints that
        # mention it; say it in words instead of letting the save fail.
        if self.instance.pk and self.instance.is_connected and "kind" in self.changed_data:
            self.add_error("kind", "This peer is connected: switch its link over before changing its kind.")
        return cleaned


class PeerInlineFormSet(forms.BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        for form in self.forms:
            instance = form.instance
            if getattr(form, "cleaned_data", {}).get("DELETE") and instance.pk and instance.is_connected:
                raise ValidationError(f"{instance.name} is connected: switch its link over before deleting it.")


class PeerInline(admin.TabularInline):
    model = Peer
    form = PeerInlineForm
    formset = PeerInlineFormSet
    fields = (
        "kind",
        "priority",
        "name",
        "host",
        "port",
        "in_maintenance",
        "health",
        "connection",
        "connected_epoch",
    )
    readonly_fields = ("health", "connection", "connected_epoch")
    max_num = 4  # two pairs: Media Blender and Admin Workstation, primary and secondary

    def get_extra(self, request: HttpRequest, obj: Server | None = None, **kwargs: Any) -> int:
        # A new server gets a row for each of its four peers; an existing one an "add" link.
        return 4 if obj is None else 0


class LinkInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Link
    fields = ("kind", "state", "epoch", connected_peer, "state_changed_at", "last_switchover_at")
    readonly_fields = fields
    extra = 0

    def get_queryset(self, request: HttpRequest) -> QuerySet[Link]:
        return links_with_connected_peer(super().get_queryset(request))


# What the monitor measures about a server: shown, never edited here.
SERVER_READ_ONLY = (*PROBE_FIELDS, "failed_at", "created_at")


class ServerAdminForm(forms.ModelForm):
    # Django 6 assumes https for a URL typed without a scheme; opt in now (and silence the warning).
    base_url = forms.URLField(
        required=False, assume_scheme="https", help_text=Server._meta.get_field("base_url").help_text
    )
    reason = forms.CharField(
        max_length=REASON_MAX,
        help_text="Why this server or its peers change (maintenance included); kept in the audit history.",
    )

    class Meta:
        model = Server
        fields = SERVER_FIELDS


@admin.register(Server)
class ServerAdmin(admin.ModelAdmin):
    form = ServerAdminForm
    list_display = ("name", "role", "health", "links_summary", "peer_count", "base_url", "failed_at")
    list_filter = ("role", "health")
    search_fields = ("name", "description", "base_url")
    fieldsets = (
        (None, {"fields": (*SERVER_FIELDS, "reason")}),
        (
            "Health (measured by the probes, read-only)",
            {
                "fields": SERVER_READ_ONLY,
            },
        ),
    )
    readonly_fields = SERVER_READ_ONLY

    def get_inlines(self, request: HttpRequest, obj: Server | None) -> list[type[admin.options.InlineModelAdmin]]:
        # Links are made by server_ensure when the server is saved: none to show on "add".
        return [PeerInline] if obj is None else [PeerInline, LinkInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Server]:
        return super().get_queryset(request).annotate(peer_count=Count("peers")).prefetch_related("links")

    @admin.display(description="peers", ordering="peer_count")
    def peer_count(self, server: Server) -> int:
        return server.peer_count

    @admin.display(description="links")
    def links_summary(self, server: Server) -> str:
        return " · ".join(
            f"{link.get_kind_display()}: {link.get_state_display()} (epoch {link.epoch})" for link in server.links.all()
        )

    def has_delete_permission(self, request: HttpRequest, obj: Server | None = None) -> bool:
        # Its sessions, failovers, alerts and audit history refer to it; no service removes one.
        return False

    def save_model(self, request: HttpRequest, obj: Server, form: forms.ModelForm, change: bool) -> None:
        # The service saves only the changed fields (the monitor writes the health
        # columns at any moment) and makes sure both links exist, inside the admin's
        # transaction, before the peer inlines are saved.
        changes = {name: form.cleaned_data[name] for name in SERVER_FIELDS if not change or name in form.changed_data}
        server = server_configure(
            server_id=obj.pk, actor=request.user, reason=form.cleaned_data["reason"], changes=changes
        )
        adopt(obj, server)

    def save_formset(self, request: HttpRequest, form: forms.ModelForm, formset: Any, change: bool) -> None:
        if formset.model is not Peer:
            super().save_formset(request, form, formset, change)
            return
        # Each peer through its service, with the server form's reason; maintenance last,
        # through its own service: switching it on drains a connected peer (a switchover).
        reason = form.cleaned_data["reason"]
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        toggles: list[tuple[Peer, bool]] = []
        for peer_form in formset.forms:
            peer = peer_form.instance
            if peer_form in formset.deleted_forms:
                if peer.pk is not None:
                    peer_remove(peer_id=peer.pk, actor=request.user, reason=reason)
                    formset.deleted_objects.append(peer)
                continue
            if not peer_form.has_changed():
                continue
            creating = peer.pk is None
            changed = [name for name in PEER_FIELDS if creating or name in peer_form.changed_data]
            saved = peer_configure(
                server_id=form.instance.pk,
                peer_id=peer.pk,
                actor=request.user,
                reason=reason,
                changes={name: peer_form.cleaned_data[name] for name in changed},
            )
            adopt(peer, saved)
            if creating:
                formset.new_objects.append(peer)
            else:
                formset.changed_objects.append((peer, changed))
            if "in_maintenance" in peer_form.changed_data:
                toggles.append((peer, peer_form.cleaned_data["in_maintenance"]))
        for peer, on in toggles:
            peer_set_maintenance(peer_id=peer.pk, on=on, actor=request.user, reason=reason)


def adopt(obj: models.Model, saved: models.Model) -> None:
    """Make the admin's unsaved instance the row the service saved (its id and values)."""
    obj.pk = saved.pk
    obj._state.adding = False
    obj._state.db = saved._state.db
    obj.refresh_from_db()


@admin.register(Link)
class LinkAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Links are made with their server; their state changes only through switchovers."""

    list_display = ("__str__", "server", "kind", "state", "epoch", connected_peer, "state_changed_at")
    list_filter = ("state", "kind", "server")
    search_fields = ("server__name",)
    list_select_related = ("server",)
    fields = ("server", "kind", "state", "epoch", connected_peer, "state_changed_at", "last_switchover_at")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Link]:
        return links_with_connected_peer(super().get_queryset(request))


# --- Policy (a singleton) ------------------------------------------------------------------


class PolicyAdminForm(forms.ModelForm):
    reason = forms.CharField(max_length=300, help_text="Why the policy changes; kept in the audit history.")

    class Meta:
        model = Policy
        fields = EDITABLE_POLICY_FIELDS


@admin.register(Policy)
class PolicyAdmin(admin.ModelAdmin):
    form = PolicyAdminForm
    fieldsets = (
        (
            "Detection",
            {
                "fields": (
                    "probe_interval_ms",
                    "probe_timeout_ms",
                    "rise",
                    "fall",
                    "flap_window_seconds",
                    "flap_max_transitions",
                    "heartbeat_interval_ms",
                    "heartbeat_suspicion",
                )
            },
        ),
        (
            "Servers (a failure ends every agent log-in and session of the server)",
            {
                "fields": (
                    "server_probe_interval_ms",
                    "server_probe_timeout_ms",
                    "server_silence_seconds",
                    "server_unresponsive_seconds",
                )
            },
        ),
        ("Switchover", {"fields": ("fail_back_after_minutes", "transit_timeout_seconds", "max_transit_attempts")}),
        (
            "Sessions",
            {
                "fields": (
                    "hung_up_grace_seconds",
                    "phone_untracked_grace_seconds",
                    "adopt_queued_on_server_failure",
                    "agent_max_sessions",
                )
            },
        ),
        (None, {"fields": ("reason", "updated_at")}),
    )
    readonly_fields = ("updated_at",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) and not Policy.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj: Policy | None = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        # A singleton has no list worth showing: go straight to its one row.
        policy = Policy.current()
        return HttpResponseRedirect(reverse("admin:failover_policy_change", args=[policy.pk]))

    def save_model(self, request: HttpRequest, obj: Policy, form: forms.ModelForm, change: bool) -> None:
        # The service locks the row, audits before/after with the reason and tells the
        # desktops; the form has already validated the values with the model's validators.
        changes = {name: form.cleaned_data[name] for name in form.changed_data if name in EDITABLE_POLICY_FIELDS}
        policy = policy_update(actor=request.user, reason=form.cleaned_data["reason"], changes=changes)
        obj.pk = policy.pk
        obj.refresh_from_db()


# --- History: read-only --------------------------------------------------------------------


@admin.register(FailoverEvent)
class FailoverEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "detected_at",
        "server",
        "kind",
        "link",
        "from_peer",
        "to_peer",
        "epoch",
        "detection_seconds",
        "switchover_seconds",
        "actor",
        "reason",
    )
    list_filter = ("kind", "server")
    search_fields = ("server__name", "reason", "from_peer__name", "to_peer__name", "actor__username")
    date_hierarchy = "detected_at"
    list_select_related = ("server", "link__server", "from_peer__server", "to_peer__server", "actor")


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("created_at", "actor_name", "action", "object_type", "object_repr", "reason")
    list_filter = ("action", "object_type")
    search_fields = ("actor_name", "object_repr", "object_id", "reason")
    date_hierarchy = "created_at"
    list_select_related = ("actor",)


class AlertOpenFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("open", "Open"), ("cleared", "Cleared")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Alert]) -> QuerySet[Alert]:
        if self.value() in ("open", "cleared"):
            return queryset.filter(cleared_at__isnull=self.value() == "open")
        return queryset


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "raised_at",
        "server",
        "kind",
        "severity",
        "message",
        "is_open",
        "acknowledged_by_name",
        "cleared_at",
        "cleared_by",
    )
    list_filter = (AlertOpenFilter, "kind", "severity", "server")
    search_fields = ("message", "server__name", "clear_reason")
    date_hierarchy = "raised_at"
    list_select_related = ("server", "cleared_by")

    @admin.display(description="open", boolean=True)
    def is_open(self, alert: Alert) -> bool:
        return alert.is_open


@admin.register(ServerSilence)
class ServerSilenceAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Maintenance windows, read only: they are started and ended on the overview or the API."""

    list_display = ("starts_at", "server", "ends_at", "ended_at", "reason", "created_by_name", "ended_by_name")
    list_filter = ("server",)
    search_fields = ("reason", "server__name", "end_note")
    date_hierarchy = "starts_at"
    list_select_related = ("server",)


@admin.register(WizardRun)
class WizardRunAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("started_at", "server", "kind", "state", "current_step", "started_by", "finished_at", "error")
    list_filter = ("state", "kind", "server")
    search_fields = ("server__name", "started_by__username", "error")
    date_hierarchy = "started_at"
    list_select_related = ("server", "started_by")


@admin.register(SyncRun)
class SyncRunAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("started_at", "server", "state", "progress", "started_by", "finished_at", "error")
    list_filter = ("state", "server")
    search_fields = ("server__name", "started_by__username", "error")
    date_hierarchy = "started_at"
    list_select_related = ("server", "started_by")

    @admin.display(description="progress")
    def progress(self, run: SyncRun) -> str:
        return f"{run.progress_done}/{run.progress_total}"


@admin.register(NodeHeartbeat)
class NodeHeartbeatAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Each node process's last beat and how busy it said it was; written by the nodes."""

    list_display = ("node", "server", "beat_at", "started_at", "http_waiting", "http_wait_ms", "loop_late_ms")
    list_filter = ("server",)
    search_fields = ("node", "server__name")
    list_select_related = ("server",)


@admin.register(Lease)
class LeaseAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Which node runs the singleton jobs; taken and renewed by the nodes themselves."""

    list_display = ("name", "holder", "epoch", "expires_at", "renewed_at")
    search_fields = ("name", "holder")


# --- Notifications ------------------------------------------------------------------------


class NotificationChannelForm(forms.ModelForm):
    url = forms.URLField(
        required=False, max_length=500, assume_scheme="https", help_text="Webhook: where to POST (http or https)."
    )
    alert_kinds = forms.MultipleChoiceField(
        choices=AlertKind.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every kind.",
    )

    reason = forms.CharField(max_length=REASON_MAX, help_text="Why the channel changes; kept in the audit history.")

    class Meta:
        model = NotificationChannel
        fields = CHANNEL_FIELDS


class ChannelDeleteForm(forms.Form):
    reason = forms.CharField(max_length=REASON_MAX, help_text="Why the channel is deleted; kept in the audit history.")


@admin.register(NotificationChannel)
class NotificationChannelAdmin(admin.ModelAdmin):
    """Where alerts are sent. Configuration, so edited here, through
    ``notification_channel_save`` / ``notification_channel_delete`` with a reason (the
    secret stays out of the audit history); the deliveries page of the console shows what
    was sent and has the same "send test" action. Deleting asks for a reason on the
    confirmation page, one channel at a time (no bulk "delete selected")."""

    form = NotificationChannelForm
    list_display = ("name", "kind", "enabled", "min_severity", "target")
    list_filter = ("kind", "enabled")
    actions = ["send_test"]
    fields = (*CHANNEL_FIELDS, "reason")
    delete_confirmation_template = "admin/failover/notificationchannel/delete_confirmation.html"

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # a bulk delete would ask no reason
        return actions

    def save_model(self, request: HttpRequest, obj: NotificationChannel, form: forms.ModelForm, change: bool) -> None:
        changes = {name: form.cleaned_data[name] for name in CHANNEL_FIELDS if not change or name in form.changed_data}
        channel = notification_channel_save(
            channel_id=obj.pk, actor=request.user, reason=form.cleaned_data["reason"], changes=changes
        )
        adopt(obj, channel)

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: dict | None = None) -> HttpResponse:
        # The confirmation page asks the reason; the delete itself is the service's.
        form = ChannelDeleteForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and not form.is_valid():
            # An empty POST is what Django's delete view takes for "show the confirmation
            # page": shown again, with the error, and nothing deleted.
            request.POST = QueryDict()
        return super().delete_view(request, object_id, {**(extra_context or {}), "reason_form": form})

    def delete_model(self, request: HttpRequest, obj: NotificationChannel) -> None:
        form = ChannelDeleteForm(request.POST)
        form.is_valid()
        notification_channel_delete(channel_id=obj.pk, actor=request.user, reason=form.cleaned_data["reason"])

    @admin.display(description="sent to")
    def target(self, channel: NotificationChannel) -> str:
        return channel.url if channel.kind == "webhook" else channel.email_to

    @admin.action(description="Send a test notification")
    def send_test(self, request: HttpRequest, queryset: QuerySet[NotificationChannel]) -> None:
        for channel in queryset:
            try:
                delivery = notification_test(channel_id=channel.pk, actor=request.user, note="from the Django admin")
            except ValidationError as error:
                self.message_user(request, " ".join(error.messages), level="error")
            else:
                self.message_user(request, f"Test notification {delivery.delivery_id} queued for {channel.name}.")


@admin.register(NotificationDelivery)
class NotificationDeliveryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """What was sent, written by the notification tasks alone."""

    list_display = (
        "created_at",
        "channel",
        "event",
        "alert",
        "attempts",
        "delivered_at",
        "next_attempt_at",
        "last_error",
    )
    list_filter = ("channel", "event")
    search_fields = ("delivery_id", "last_error")
    list_select_related = ("channel", "alert__server")


# Django REST framework's plain-text tokens are no longer accepted (API tokens replaced
# them: failover/models/api_tokens.py, made and revoked on the desktop's API tokens page):
# its admin page would offer to make keys that do not work.
if admin.site.is_registered(TokenProxy):
    admin.site.unregister(TokenProxy)
