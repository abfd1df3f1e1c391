"""ASGI entry point: HTTP through Django's WSGI handler, WebSockets through Channels.

Served by uvicorn (see the README for the measurement behind that choice):
``uvicorn collabadmin.asgi:application``.

Why HTTP goes through WSGI inside the ASGI server: every view of this project is sync.
Django's ASGI handler runs a sync view in a new thread per request, hops threads around
each of its own middleware twice (``process_request`` and ``process_response`` through
``sync_to_async``), and, since the thread dies with the request, opens a new database
connection for every request. Profiled in process: 16 thread hops and 3.4 ms of CPU for
``GET /healthz``, 14-18 ms for ``POST /api/v1/sessions/``. a2wsgi runs Django's WSGI handler
on a fixed pool of threads instead: one hop per request, and a thread's database
connection lives on (``DB_CONN_MAX_AGE``): 1.1 ms and 8.8 ms (docs/performance.md,
caller requests). Nothing else changes for a request: same middleware, same views.

Three things stand in front of that pool. A watcher's next fetch of a shared live fragment
is answered on the event loop from the render it needs (``SharedFragmentFastPath``,
collabadmin/fragment_fast_path.py). ``GET /healthz`` is answered on the event loop
(``HealthzFirst``, collabadmin/probes.py) so that a node with every thread busy still
answers its probe at once: a late answer must never read as a dead node. And
``http_load`` notes how long each request waits for a thread, which the node's heartbeat
reports (common/http_load.py).
"""

from __future__ import annotations

import gc
import os

from a2wsgi import WSGIMiddleware
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "collabadmin.settings")
# Django must be set up before anything imports models (the WebSocket routes do).
django_wsgi_app = get_wsgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402

from collabadmin.celery import app as celery_app  # noqa: E402
from collabadmin.fragment_fast_path import SharedFragmentFastPath  # noqa: E402
from collabadmin.probes import HealthzFirst  # noqa: E402
from common.http_load import http_load  # noqa: E402

# Every task module is imported now, before any request: a service sends its follow-up by
# task name (common/outbox.py), and the first requests of a restarted node, on several
# threads at once, each importing the task modules halfway, once lost a follow-up to
# NotRegistered (sessions.release_route, seen in the rolling-upgrade test).
celery_app.loader.import_default_modules()

# At most this many HTTP requests run a view at once in this process; more wait their turn.
# A watcher's next fetch of a shared live fragment is answered before the pool, on the event
# loop (collabadmin/fragment_fast_path.py): no thread, no database, no wait on a thread.
http_app = HealthzFirst(
    SharedFragmentFastPath(
        http_load.asgi(WSGIMiddleware(http_load.wsgi(django_wsgi_app), workers=settings.HTTP_THREADS))
    )
)

from collabadmin.routing import token_websocket_urlpatterns, websocket_urlpatterns  # noqa: E402
from collabadmin.ws_token_auth import TokenAuthMiddleware  # noqa: E402
from failover.monitor.runner import MonitorLifespan  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": http_app,
        # Each node runs the health monitor beside its web server (one acts, by lease).
        "lifespan": MonitorLifespan(
            enabled=settings.COLLABADMIN_RUN_MONITOR, heartbeat_server=settings.COLLABADMIN_SERVER_NAME
        ),
        # Foreign origins are refused before any consumer runs; a socket with an
        # "Authorization: Token" header (a script: browsers cannot send one) is
        # authenticated by its API token instead (collabadmin/ws_token_auth.py).
        "websocket": TokenAuthMiddleware(
            session_app=AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
            token_app=URLRouter(token_websocket_urlpatterns),
        ),
    }
)

# Everything loaded so far (Django, the apps, the URL conf) lives as long as the process:
# move it out of the collector's generations, so a full collection only walks what requests
# allocate. Measured with 1,000 servers: /api/v1/status/ p95 154 -> 90 ms (docs/performance.md).
gc.freeze()
