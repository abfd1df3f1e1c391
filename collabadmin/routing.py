"""WebSocket URL routes: the Agent desktop's ``/ws/agent/`` (the status one arrives with issue 5)."""

from __future__ import annotations

from django.urls import path

from sessions.consumers import AgentConsumer

websocket_urlpatterns: list = [
    path("ws/agent/", AgentConsumer.as_asgi()),
]
