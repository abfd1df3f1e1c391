"""What every page of the Administration desktop shares: access by role permission, the reason an
action needs, going back to the page it came from, pagination, and the live fragment.

A console page is one view and two templates: ``page.html`` (extends ``console/base.html``)
includes ``_page.html``, and the same view answers ``?fragment=1`` with ``_page.html`` alone;
``static/console/console.js`` re-fetches that fragment (with the page's own filters) on every
event of ``/ws/status/`` and swaps each ``[data-region]`` in place.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from common.permissions import may, requires
from common.roles import Permission
from failover.services.audit import reason_too_long

DEFAULT_PAGE_SIZE = 50


def requires_permission(permission: Permission) -> Callable:
    """A desktop page or action for holders of ``permission``: anonymous users go to the
    log-in page, a signed-in user without it gets the 403 page (not a log-in loop)."""

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path(), reverse("login"))
            if not may(request.user, permission):
                raise PermissionDenied(f"Your role does not allow this (it needs: {permission.description.lower()}).")
            return view(request, *args, **kwargs)

        return requires(permission)(checked)

    return decorate


def read_reason(request: HttpRequest) -> str:
    """The action's reason from the confirmation dialog, stripped (never cut: see
    :func:`reason_refusal`)."""
    return (request.POST.get("reason") or "").strip()


def reason_refusal(reason: str) -> str | None:
    """Why an action cannot go ahead with this reason (blank, or longer than the audit
    keeps: the browser's limit can be bypassed), as the end of a sentence; else ``None``."""
    if not reason:
        return "give a reason."
    if too_long := reason_too_long(reason):
        return too_long[0].lower() + too_long[1:]
    return None


def redirect_back(request: HttpRequest, fallback: str = "home") -> HttpResponseRedirect:
    """Back to the console page the action was posted from (same site only), else ``fallback``."""
    target = request.POST.get("next") or ""
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = reverse(fallback)
    return HttpResponseRedirect(target)


def paginate(request: HttpRequest, rows: QuerySet, per_page: int = DEFAULT_PAGE_SIZE) -> Page:
    """One page of ``rows`` (``?page=N``; out-of-range numbers give the nearest page).
    Two queries whatever the table's size: a COUNT and the slice."""
    return Paginator(rows, per_page).get_page(request.GET.get("page"))


def wants_fragment(request: HttpRequest) -> bool:
    return request.GET.get("fragment") == "1"


def render_console(request: HttpRequest, page: str, fragment: str, context: dict[str, Any]) -> HttpResponse:
    """The whole page, or only its live fragment when ``?fragment=1`` (never cached)."""
    if wants_fragment(request):
        response = render(request, fragment, context)
        response["Cache-Control"] = "no-store"
        return response
    return render(request, page, {**context, "fragment_template": fragment})
