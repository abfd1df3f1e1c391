"""How a person given a log-in without a password chooses one: a set-password link.

The add-agent wizard (and Verify and Sync) create an agent's user with no usable password:
no password is ever generated, shown, stored or logged by collabadmin. Instead an
administrator hands the agent a link to Django's "set a new password" page, made of the
user's id and a password-reset token. The token is signed with ``SECRET_KEY`` over the
user's password hash and last log-in, so nothing is stored, it stops working as soon as a
password is set (the hash changes), and it expires after ``PASSWORD_RESET_TIMEOUT``.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.tokens import default_token_generator
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode


def set_password_path(user: AbstractBaseUser) -> str | None:
    """The path of a one-time link with which ``user`` chooses a password; ``None`` when
    the user has one already (or may not log in)."""
    if user.has_usable_password() or not user.is_active:
        return None
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    return reverse("password_reset_confirm", kwargs={"uidb64": uid, "token": default_token_generator.make_token(user)})


def link_valid_days() -> int:
    """How long a set-password link works, in whole days (for the sentence beside it)."""
    return max(1, settings.PASSWORD_RESET_TIMEOUT // 86400)
