"""Bench-only ASGI application: the project's Django HTTP app plus a WebSocket echo.

The project has no WebSocket consumer yet (they arrive with issues 4 and 5), so the
ASGI server benchmark needs one. HTTP is served by exactly the object
``collabadmin.asgi`` builds; ``/ws/echo/`` is a tiny :class:`EchoConsumer` without
authentication or origin checks. The consumer still joins the configured channel layer
(as every Channels consumer does), so each connection also costs what it will in
production. Never route this module in production.

Serve it with, e.g., ``uvicorn bench.echo_asgi:application``.
"""

from __future__ import annotations

from channels.generic.websocket import AsyncWebsocketConsumer
from channels.routing import ProtocolTypeRouter, URLRouter
from django.urls import path

from collabadmin.asgi import django_asgi_app


class EchoConsumer(AsyncWebsocketConsumer):
    """Accepts every connection and sends each frame straight back."""

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Echo the frame as it came, text or binary."""
        if text_data is not None:
            await self.send(text_data=text_data)
        else:
            await self.send(bytes_data=bytes_data)


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter([path("ws/echo/", EchoConsumer.as_asgi())]),
    }
)
