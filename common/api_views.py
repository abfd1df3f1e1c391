"""Base classes of the REST API's views, shared by every app's endpoints."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from rest_framework import serializers, viewsets

from common.api_conventions import Pagination
from common.api_schema import ApiSchema


class ReadOnlyResourceViewSet(viewsets.ReadOnlyModelViewSet):
    """List and detail, with query filters validated by ``filter_serializer_class``.

    Each filter field's ``source`` is the ORM lookup it applies. Validating through a
    serializer is what turns ``?state=bogus`` into a 400 with a message instead of an
    empty page or a database error.
    """

    filter_serializer_class: type[serializers.Serializer] | None = None
    pagination_class = Pagination
    schema = ApiSchema()

    def filter_queryset(self, queryset: QuerySet) -> QuerySet:
        queryset = super().filter_queryset(queryset)
        # Filters narrow lists only: a detail URL names its object already.
        if self.action == "list" and self.filter_serializer_class is not None:
            queryset = queryset.filter(**self.validated_filters())
        return queryset

    def validated_filters(self) -> dict[str, Any]:
        """The list's query filters as ORM lookups; raises a 400 ValidationError if one is bad."""
        assert self.filter_serializer_class is not None
        # A blank value (what an empty HTML <select> sends) means "no filter", not "blank".
        data = {key: value for key, value in self.request.query_params.items() if value != ""}
        serializer = self.filter_serializer_class(data=data)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)
