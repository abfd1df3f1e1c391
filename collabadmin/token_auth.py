"""API token authentication: DRF's, with the key looked up in one plain query.

Every request of a caller-facing integration carries ``Authorization: Token …``. DRF's
``TokenAuthentication`` builds ``Token.objects.select_related("user").get(key=…)`` for each;
building that query cost more than running it (py-spy of ``POST /api/v1/sessions/``: 12 % of
the web node). Same rules and messages: an unknown key or an inactive user is refused.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions
from rest_framework.authtoken.models import Token


class TokenAuthentication(authentication.TokenAuthentication):
    def authenticate_credentials(self, key: str) -> tuple[Any, Token]:
        user_model = get_user_model()
        user_table, token_table = user_model._meta.db_table, Token._meta.db_table
        user_pk = user_model._meta.pk.column
        token_user = Token._meta.get_field("user").column
        # Only table and column names from the models are formatted in; the key is a parameter.
        sql = f"SELECT u.* FROM {user_table} u JOIN {token_table} t ON t.{token_user} = u.{user_pk} WHERE t.key = %s"  # noqa: S608
        user = next(iter(user_model.objects.raw(sql, [key])), None)
        if user is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        # request.auth: the token as DRF would give it (nothing here reads more than the key).
        return user, Token(key=key, user=user)
