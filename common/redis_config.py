"""Where Redis is: one server (``REDIS_URL``) or a master watched by Redis Sentinel.

With ``REDIS_SENTINELS=host:port,host:port`` and ``REDIS_SENTINEL_MASTER=name`` every user
of Redis (the Celery broker and result store, the channel layer, our own keys: the live
sequence, drain locks, readiness) asks the sentinels which server is the master and
follows it when Sentinel promotes a replica. One :class:`SentinelConfig` describes that
and renders it in each library's own spelling: kombu's ``sentinel://`` URLs and
``master_name`` transport option, channels_redis's ``sentinels``/``master_name`` host, a
redis-py ``Sentinel`` client.

Imported by settings: only the standard library and redis-py, no Django.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

import redis
from redis.sentinel import Sentinel

# Asking a sentinel where the master is must never hang a caller: they answer at once
# or are down (the next sentinel is asked then).
SENTINEL_TIMEOUT_SECONDS = 1.0
DEFAULT_SENTINEL_PORT = 26379


class RedisConfigError(ValueError):
    """A Redis variable that cannot be used; the message names it."""


@dataclass(frozen=True)
class SentinelConfig:
    """A Redis master found through Sentinel (hashable: clients are cached per config)."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str = ""
    password: str = ""  # of the Redis servers (master and replicas)
    sentinel_password: str = ""  # of the sentinels themselves

    def sentinel_kwargs(self) -> dict[str, object]:
        """How to talk to the sentinels (not to the master)."""
        kwargs: dict[str, object] = {
            "socket_timeout": SENTINEL_TIMEOUT_SECONDS,
            "socket_connect_timeout": SENTINEL_TIMEOUT_SECONDS,
        }
        if self.sentinel_password:
            kwargs["password"] = self.sentinel_password
        return kwargs

    def master_kwargs(self) -> dict[str, object]:
        """How to talk to the master once found (database and credentials)."""
        kwargs: dict[str, object] = {"db": self.db}
        if self.username:
            kwargs["username"] = self.username
        if self.password:
            kwargs["password"] = self.password
        return kwargs

    def kombu_url(self) -> str:
        """kombu's and Celery's spelling: one ``sentinel://`` URL per sentinel, joined by
        ``;``. The credentials in it are the master's (kombu passes them to ``master_for``)."""
        credentials = ""
        if self.username or self.password:
            credentials = f"{quote(self.username, safe='')}:{quote(self.password, safe='')}@"
        return ";".join(f"sentinel://{credentials}{_netloc(host, port)}/{self.db}" for host, port in self.sentinels)

    def kombu_transport_options(self) -> dict[str, object]:
        """The options kombu's Sentinel transport (and Celery's Sentinel result backend) need."""
        return {"master_name": self.master, "sentinel_kwargs": self.sentinel_kwargs()}

    def channel_layer_host(self, **extra: object) -> dict[str, object]:
        """A ``hosts`` entry of channels_redis: it builds a ``SentinelConnectionPool``."""
        return {
            "sentinels": list(self.sentinels),
            "master_name": self.master,
            "sentinel_kwargs": self.sentinel_kwargs(),
            **self.master_kwargs(),
            **extra,
        }

    def client(self, *, timeout: float) -> redis.Redis:
        """A redis-py client of the current master; it asks the sentinels again after a
        failover (its pool drops connections to a master that became a replica)."""
        sentinel = Sentinel(list(self.sentinels), sentinel_kwargs=self.sentinel_kwargs())
        return sentinel.master_for(
            self.master, socket_timeout=timeout, socket_connect_timeout=timeout, **self.master_kwargs()
        )

    def describe(self) -> str:
        """For logs and error messages: no password."""
        hosts = ",".join(_netloc(host, port) for host, port in self.sentinels)
        return f"Redis Sentinel master {self.master!r} (db {self.db}) via {hosts}"


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_sentinels(raw: str) -> tuple[tuple[str, int], ...]:
    """``host:port,host:port`` (``[::1]:26379`` for IPv6; the port defaults to 26379)."""
    sentinels = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        host, port = item, str(DEFAULT_SENTINEL_PORT)
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            port = rest.removeprefix(":") or port
        elif item.count(":") == 1:
            host, port = item.split(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise RedisConfigError(f"REDIS_SENTINELS: {item!r} is not host:port.")
        sentinels.append((host, int(port)))
    if not sentinels:
        raise RedisConfigError("REDIS_SENTINELS is set but names no sentinel (host:port,host:port).")
    return tuple(sentinels)


def sentinel_from_env(environ: Mapping[str, str] = os.environ) -> SentinelConfig | None:
    """The Sentinel configuration from the environment, or None when ``REDIS_SENTINELS`` is unset."""
    raw = environ.get("REDIS_SENTINELS", "").strip()
    if not raw:
        return None
    if environ.get("REDIS_URL", "").strip():
        raise RedisConfigError("Set either REDIS_URL (one Redis server) or REDIS_SENTINELS (Sentinel), not both.")
    master = environ.get("REDIS_SENTINEL_MASTER", "").strip()
    if not master:
        raise RedisConfigError("REDIS_SENTINELS is set: REDIS_SENTINEL_MASTER must name the master (e.g. mymaster).")
    db = environ.get("REDIS_DB", "0").strip()
    if not db.isdigit():
        raise RedisConfigError(f"REDIS_DB={db!r} is not a database number.")
    return SentinelConfig(
        sentinels=parse_sentinels(raw),
        master=master,
        db=int(db),
        username=environ.get("REDIS_USERNAME", ""),
        password=environ.get("REDIS_PASSWORD", ""),
        sentinel_password=environ.get("REDIS_SENTINEL_PASSWORD", ""),
    )
