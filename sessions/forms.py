"""HTML forms of the Agent desktop's log-in and the caller's request page."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.forms import AuthenticationForm

from failover.choices import ServerRole
from sessions.models import CollaborationSession, SkillGroup
from sessions.permissions import agent_of


class AgentAuthenticationForm(AuthenticationForm):
    """Django's log-in form, refusing a valid user who is not an enabled agent.

    Refused here, before the log-in, so a non-agent never holds a desktop session it
    cannot use, and the message says why instead of "wrong password".
    """

    error_messages = {
        **AuthenticationForm.error_messages,
        "not_an_agent": "This account is not an enabled agent, so it cannot use the Agent desktop. "
        "Ask your administrator to set up (or enable) your agent.",
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")  # labels above fields read better without a colon
        super().__init__(*args, **kwargs)

    def confirm_login_allowed(self, user: Any) -> None:
        super().confirm_login_allowed(user)
        if agent_of(user) is None:
            raise forms.ValidationError(self.error_messages["not_an_agent"], code="not_an_agent")


def skill_group_choices() -> list[tuple[str, str]]:
    """The distinct skill group names of routing servers, "any" first.

    Names, not ids: the director picks the server only when the request arrives, and the
    service then looks the name up on that server.
    """
    names = (
        SkillGroup.objects.filter(server__role=ServerRole.ROUTING)
        .order_by("name")
        .values_list("name", flat=True)
        .distinct()
    )
    return [("", "Any available agent"), *((name, name) for name in names)]


def _max_length(field_name: str) -> int:
    """The model column's length, so form and database never disagree."""
    max_length = CollaborationSession._meta.get_field(field_name).max_length
    assert max_length is not None
    return max_length


class CallerRequestForm(forms.Form):
    """What a caller fills in to ask for a collaboration session."""

    caller_name = forms.CharField(
        label="Your name",
        max_length=_max_length("caller_name"),
        widget=forms.TextInput(attrs={"autocomplete": "name"}),
    )
    caller_contact = forms.CharField(
        label="E-mail or phone number",
        max_length=_max_length("caller_contact"),
        required=False,
        help_text="Optional: how the agent can reach you if the session is interrupted.",
        widget=forms.TextInput(attrs={"autocomplete": "email"}),
    )
    topic = forms.CharField(
        label="What is it about?",
        max_length=_max_length("topic"),
        required=False,
    )
    skill_group = forms.ChoiceField(label="Department", required=False, choices=())

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        # Read at each request, so a skill group added in the admin shows up at once.
        self.fields["skill_group"].choices = skill_group_choices()
