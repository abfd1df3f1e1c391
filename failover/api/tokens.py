"""The API tokens endpoints: list, read, create (the key in that one answer only), revoke.

Any user with ``view_desktop`` manages their own tokens; a holder of ``manage_api_tokens``
sees and manages everyone's (``failover.services.api_tokens``, which enforces it). A token
of someone else is "not found" to a user who may not see it. The key's hash is never
returned: only the prefix, which is enough to tell tokens apart.
"""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from common.api_conventions import MAX_ID, NOT_ALLOWED, NOT_FOUND, VALIDATION_ERROR
from common.api_views import ReadOnlyResourceViewSet
from common.permissions import HasRolePermission, requires
from common.roles import VIEW_DESKTOP
from failover.choices import ApiTokenState
from failover.models import ApiToken
from failover.services.api_tokens import token_create, token_revoke, tokens_visible_to


class ApiTokenSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.get_username", read_only=True)
    created_by = serializers.CharField(source="created_by.get_username", read_only=True, allow_null=True, default=None)
    revoked_by = serializers.CharField(source="revoked_by.get_username", read_only=True, allow_null=True, default=None)
    state = serializers.ChoiceField(choices=ApiTokenState.choices, read_only=True)

    class Meta:
        model = ApiToken
        fields = [
            "id",
            "user",
            "username",
            "name",
            "key_prefix",
            "state",
            "created_at",
            "created_by",
            "expires_at",
            "revoked_at",
            "revoked_by",
            "revoke_reason",
            "last_used_at",
            "last_used_from",
        ]
        read_only_fields = fields


class ApiTokenCreatedSerializer(ApiTokenSerializer):
    key = serializers.CharField(read_only=True, help_text="The token's key: shown this once, never again.")

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "key"]
        read_only_fields = fields


class ApiTokenCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, help_text="What will use it, e.g. 'IVR integration'.")
    days = serializers.IntegerField(
        required=False, min_value=1, help_text="Days until it expires (default API_TOKEN_DEFAULT_DAYS)."
    )
    user = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_ID,
        help_text="Whose token (user id); default: yours. Another user's needs manage_api_tokens.",
    )


class ApiTokenRevokeSerializer(serializers.Serializer):
    reason = serializers.CharField(
        max_length=500, required=False, allow_blank=True, help_text="Why; kept in the audit history."
    )


@requires(VIEW_DESKTOP)
class ApiTokenViewSet(mixins.CreateModelMixin, ReadOnlyResourceViewSet):
    """API tokens: yours, or everyone's with manage_api_tokens. Newest first."""

    permission_classes = [HasRolePermission]
    serializer_class = ApiTokenSerializer

    def get_queryset(self) -> QuerySet[ApiToken]:
        return tokens_visible_to(self.request.user)

    @extend_schema(
        summary="Make an API token",
        request=ApiTokenCreateSerializer,
        responses={201: ApiTokenCreatedSerializer, 400: VALIDATION_ERROR, 403: NOT_ALLOWED},
    )
    @requires(VIEW_DESKTOP)
    def create(self, request: Request, *args: object, **kwargs: object) -> Response:
        """The answer holds the key, once: store it now; only its prefix is kept readable."""
        body = ApiTokenCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        token, key = token_create(
            user=data.get("user", request.user.pk), name=data["name"], days=data.get("days"), actor=request.user
        )
        token.key = key  # for this answer only
        return Response(ApiTokenCreatedSerializer(token).data, status=201)

    @extend_schema(
        summary="Revoke an API token",
        request=ApiTokenRevokeSerializer,
        responses={200: ApiTokenSerializer, 400: VALIDATION_ERROR, 403: NOT_ALLOWED, 404: NOT_FOUND},
    )
    @requires(VIEW_DESKTOP)
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str | None = None) -> Response:
        """Refused by the API from now on, its open WebSockets closed; audited with the reason."""
        token = self.get_object()
        body = ApiTokenRevokeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        token = token_revoke(token_id=token.pk, actor=request.user, reason=body.validated_data.get("reason", ""))
        return Response(ApiTokenSerializer(token).data)
