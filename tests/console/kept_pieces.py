"""Helpers of the tests of pieces rendered once per change of what they show
(console/kept_html.py: the overview's server cards, the sessions page's rows)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.test import Client
from django.test.signals import template_rendered

from common import roles
from tests.factories import role_user


@contextmanager
def counting_renders(template_name: str) -> Iterator[list[str]]:
    """A list that grows by one each time ``template_name`` is rendered (not taken from a cache)."""
    rendered: list[str] = []

    def count(sender, template, **kwargs):
        if template.name == template_name:
            rendered.append(template.name)

    template_rendered.connect(count)
    try:
        yield rendered
    finally:
        template_rendered.disconnect(count)


def client_of(role: roles.Role, zone: str | None = None) -> Client:
    """A browser logged in as a new user of ``role``, in time zone ``zone`` (its ``tz`` cookie)."""
    client = Client()
    client.force_login(role_user(role, username=f"{role.key}-{zone or 'utc'}"))
    if zone:
        client.cookies["tz"] = zone
    return client
