"""The Administration desktop's API tokens page (``/console/tokens/``).

Every user with ``view_desktop`` sees and manages their own tokens here; a holder of
``manage_api_tokens`` sees everyone's and may make one for any user. A new token's key is
shown once, in the answer to the creation (never redirected to, never stored: only its
hash is kept); revoking asks a reason, kept in the audit history.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from common.permissions import may
from common.roles import MANAGE_API_TOKENS, VIEW_DESKTOP
from console.pages import paginate, read_reason, reason_refusal, redirect_back, render_console, requires_permission
from failover.services.api_tokens import token_create, token_revoke, tokens_visible_to


def _context(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    manages = may(request.user, MANAGE_API_TOKENS)
    page = paginate(request, tokens_visible_to(request.user))
    page.object_list = list(page.object_list)
    return {
        "page": page,
        "manages_all": manages,
        "users": list(get_user_model().objects.filter(is_active=True).order_by("username")) if manages else [],
        "default_days": settings.API_TOKEN_DEFAULT_DAYS,
        "max_days": settings.API_TOKEN_MAX_DAYS,
        "filtered": False,
        **extra,
    }


def _render(request: HttpRequest, status: int = 200, **extra: Any) -> HttpResponse:
    response = render_console(request, "console/tokens.html", "console/_tokens.html", _context(request, **extra))
    response.status_code = status
    return response


@requires_permission(VIEW_DESKTOP)
@require_GET
def tokens_page(request: HttpRequest) -> HttpResponse:
    return _render(request)


@requires_permission(VIEW_DESKTOP)
@require_http_methods(["POST"])
def token_create_view(request: HttpRequest) -> HttpResponse:
    """Answered with the page itself, holding the key: no redirect, so the key is in no
    URL, session or cookie, and a reload does not show it again."""
    owner = request.POST.get("user") or request.user.pk
    form = {"name": request.POST.get("name", ""), "days": request.POST.get("days", ""), "user": str(owner)}
    try:
        token, key = token_create(user=int(owner), name=form["name"], days=form["days"] or None, actor=request.user)
    except (ValueError, ValidationError, PermissionDenied) as error:
        refusal = " ".join(error.messages) if isinstance(error, ValidationError) else str(error) or "Not a user."
        return _render(request, status=400, form=form, form_error=f"Token not made: {refusal}")
    response = _render(request, status=201, new_token=token, new_key=key)
    response["Cache-Control"] = "no-store"  # the key must not stay in any cache
    return response


@requires_permission(VIEW_DESKTOP)
@require_POST
def token_revoke_view(request: HttpRequest, token_id: int) -> HttpResponse:
    reason = read_reason(request)
    if refusal := reason_refusal(reason):
        messages.error(request, f"Token not revoked: {refusal}")
        return redirect_back(request, "console-tokens")
    try:
        token = token_revoke(token_id=token_id, actor=request.user, reason=reason)
    except (ValidationError, PermissionDenied) as error:
        refusal = " ".join(error.messages) if isinstance(error, ValidationError) else str(error)
        messages.error(request, f"Token not revoked: {refusal}")
        return redirect_back(request, "console-tokens")
    messages.success(request, f"Token {token} of {token.user.get_username()} revoked: it is refused from now on.")
    return redirect_back(request, "console-tokens")
