"""API tokens: several per user, named, expiring, stored only as a hash.

A key is ``ca_`` followed by 40 random URL-safe characters, shown once when the token is
made (``failover.services.api_tokens``). The database keeps its SHA-256 and a short prefix
for people to tell tokens apart: a copy of the database (a backup, a support dump) gives
nobody a working key. A plain SHA-256, not a slow password hash: the key is 240 random
bits, nothing to guess, and every API request looks its token up by the hash.
"""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone

from failover.choices import ApiTokenState

KEY_PREFIX = "ca_"
KEY_RANDOM_CHARS = 40
# What is kept in clear and shown: "ca_" and the first 8 random characters.
SHOWN_PREFIX_CHARS = len(KEY_PREFIX) + 8


def new_key() -> str:
    # token_urlsafe(30) gives exactly 40 characters of [A-Za-z0-9_-].
    return KEY_PREFIX + secrets.token_urlsafe(KEY_RANDOM_CHARS * 3 // 4)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiToken(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="What uses it, e.g. 'IVR integration'.")
    key_prefix = models.CharField(max_length=SHOWN_PREFIX_CHARS, help_text="The start of the key, shown.")
    key_hash = models.CharField(max_length=64, unique=True, db_index=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoke_reason = models.CharField(max_length=500, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_used_from = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.name} ({self.key_prefix}…)"

    def is_expired(self, now=None) -> bool:
        return self.expires_at <= (now or timezone.now())

    def is_active(self, now=None) -> bool:
        return self.revoked_at is None and not self.is_expired(now)

    @property
    def state(self) -> ApiTokenState:
        if self.revoked_at is not None:
            return ApiTokenState.REVOKED
        return ApiTokenState.EXPIRED if self.is_expired() else ApiTokenState.ACTIVE
