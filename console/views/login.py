"""The Administration desktop's log-in: for users whose role may view the desktop.

Refused before the log-in (like the Agent desktop's), so a user without a role never
holds a console session it cannot use, and the message says why instead of "wrong
password". Agents log in on the Agent desktop.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView

from common.permissions import may
from common.roles import VIEW_DESKTOP


class ConsoleAuthenticationForm(AuthenticationForm):
    """Django's log-in form, refusing a valid user without view_desktop."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "no_role": "This account has no role on the Administration desktop (it needs: "
        f"{VIEW_DESKTOP.description.lower()}). Agents log in on the Agent desktop; "
        "ask an administrator for a role if you need one.",
    }

    def confirm_login_allowed(self, user: Any) -> None:
        super().confirm_login_allowed(user)
        if not may(user, VIEW_DESKTOP):
            raise forms.ValidationError(self.error_messages["no_role"], code="no_role")


class ConsoleLoginView(LoginView):
    authentication_form = ConsoleAuthenticationForm
