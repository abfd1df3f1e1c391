"""WebSocket URL routes. The consumers arrive with the live desktops (issues 4 and 5)."""

from __future__ import annotations

websocket_urlpatterns: list = []
