"""The favicon (issue 15, point 10): ``/favicon.ico`` answered 404 on every page view."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_favicon_ico_leads_to_the_icon_that_is_served(anonymous_client):
    response = anonymous_client.get("/favicon.ico")

    assert response.status_code == 301
    icon = Client().get(response["Location"])
    assert icon.status_code == 200
    assert icon["Content-Type"] == "image/svg+xml"
    assert b"<svg" in b"".join(icon.streaming_content if icon.streaming else [icon.content])


@pytest.mark.parametrize("path", ["/login/", "/request/"])
def test_pages_name_their_icon(anonymous_client, path):
    html = anonymous_client.get(path).content.decode()

    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in html
