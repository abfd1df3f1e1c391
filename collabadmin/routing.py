"""WebSocket URL routes: the Administration desktop's ``/ws/status/`` and the Agent desktop's ``/ws/agent/``."""

from __future__ import annotations

from django.urls import path

from console.consumers import StatusConsumer
from sessions.consumers import AgentConsumer

websocket_urlpatterns: list = [
    path("ws/status/", StatusConsumer.as_asgi()),
    path("ws/agent/", AgentConsumer.as_asgi()),
]

# What a script may open with an API token (``Authorization: Token``): the status feed only.
token_websocket_urlpatterns: list = [
    path("ws/status/", StatusConsumer.as_asgi()),
]
