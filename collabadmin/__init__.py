"""The collabadmin project package: settings, URLs, ASGI and Celery apps."""

from collabadmin.celery import app as celery_app

__all__ = ("celery_app",)
