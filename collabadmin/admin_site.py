"""The Django admin, for superusers only.

Roles (common/roles.py) open the Administration desktop and the API; the Django admin
edits configuration and assigns those roles, so only superusers get in. ``is_staff``
alone (Django's default) opens nothing any more.
"""

from __future__ import annotations

from django.contrib.admin import AdminSite
from django.contrib.admin.apps import AdminConfig
from django.http import HttpRequest


class SuperuserAdminSite(AdminSite):
    def has_permission(self, request: HttpRequest) -> bool:
        user = request.user
        return bool(user.is_active and user.is_superuser)


class SuperuserAdminConfig(AdminConfig):
    default_site = "collabadmin.admin_site.SuperuserAdminSite"
