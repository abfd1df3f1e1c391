"""ASGI entry point: HTTP through Django, WebSockets through Channels.

Served by uvicorn (see the README for the measurement behind that choice):
``uvicorn collabadmin.asgi:application``.
"""

from __future__ import annotations

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "collabadmin.settings")
# Django must be set up before anything imports models (the WebSocket routes do).
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402

from collabadmin.routing import websocket_urlpatterns  # noqa: E402
from failover.monitor.runner import MonitorLifespan  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Each node runs the health monitor beside its web server (one acts, by lease).
        "lifespan": MonitorLifespan(enabled=settings.COLLABADMIN_RUN_MONITOR),
        # Foreign origins are refused before any consumer runs.
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

# Everything loaded so far (Django, the apps, the URL conf) lives as long as the process:
# move it out of the collector's generations, so a full collection only walks what requests
# allocate. Measured with 1,000 servers: /api/v1/status/ p95 154 -> 90 ms (docs/performance.md).
gc.freeze()
