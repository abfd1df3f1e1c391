"""API tokens (issue 22, point 2): several per user, named, expiring, stored hashed, revocable
on the desktop page and by the API, last use recorded; revoked or expired tokens refused at
once; DRF tokens of the release before migrated; viewers manage their own only."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from common.roles import ADMINISTRATOR, VIEWER, Role
from failover.choices import AuditAction
from failover.models import ApiToken, AuditEntry
from tests.factories import UserFactory, api_key

pytestmark = pytest.mark.django_db

KEY = re.compile(r"ca_[A-Za-z0-9_-]{40}")


def role_user(role: Role, username: str):
    user = UserFactory(username=username)
    user.groups.add(Group.objects.get(name=role.group))
    return user


@pytest.fixture
def viewer():
    return role_user(VIEWER, "vera")


@pytest.fixture
def administrator():
    return role_user(ADMINISTRATOR, "ada")


def logged_in_api(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def token_api(key: str, address: str = "192.0.2.10") -> APIClient:
    client = APIClient(REMOTE_ADDR=address)
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def logged_in_browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def every_stored_text() -> str:
    """Every column of every token row and audit entry, as text: where a key must not be."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {ApiToken._meta.db_table}")  # noqa: S608 (a model's table)
        rows = cursor.fetchall()
    audits = list(AuditEntry.objects.values_list("before", "after", "object_repr", "reason"))
    return repr(rows) + repr(audits)


# --- The API --------------------------------------------------------------------------------------


def test_a_token_made_by_the_api_shows_its_key_once_and_stores_only_its_hash(viewer):
    api = logged_in_api(viewer)

    made = api.post("/api/v1/tokens/", {"name": "IVR integration", "days": 30}, format="json")

    assert made.status_code == 201
    key = made.json()["key"]
    assert KEY.fullmatch(key)
    token = ApiToken.objects.get()
    assert token.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert made.json()["key_prefix"] == token.key_prefix == key[:11]
    assert (token.expires_at - token.created_at) == timedelta(days=30)
    assert key not in every_stored_text()
    listed = api.get("/api/v1/tokens/").json()["results"]
    read = api.get(f"/api/v1/tokens/{token.pk}/").json()
    for shown in (listed[0], read):
        assert "key" not in shown
        assert "key_hash" not in shown
        assert token.key_hash not in repr(shown)
    entry = AuditEntry.objects.get(action=AuditAction.API_TOKEN_CREATED)
    assert (entry.actor, entry.object_id) == (viewer, str(token.pk))


def test_a_new_token_authenticates_and_records_its_last_use_at_most_once_a_minute(viewer):
    key = api_key(viewer)
    script = token_api(key, address="192.0.2.44")

    assert script.get("/api/v1/tokens/").status_code == 200
    token = ApiToken.objects.get()
    assert token.last_used_from == "192.0.2.44"
    first_use = token.last_used_at
    assert first_use is not None
    assert timezone.now() - first_use < timedelta(seconds=30)
    assert token_api(key, address="192.0.2.45").get("/api/v1/tokens/").status_code == 200
    token.refresh_from_db()
    assert (token.last_used_at, token.last_used_from) == (first_use, "192.0.2.44")  # within the minute: no write

    ApiToken.objects.filter(pk=token.pk).update(last_used_at=first_use - timedelta(minutes=2))
    assert token_api(key, address="192.0.2.45").get("/api/v1/tokens/").status_code == 200
    token.refresh_from_db()
    assert token.last_used_from == "192.0.2.45"
    assert token.last_used_at > first_use


def test_a_revoked_token_is_refused_at_once_with_401_and_the_revocation_is_audited(viewer):
    key = api_key(viewer)
    script = token_api(key)
    assert script.get("/api/v1/tokens/").status_code == 200
    token = ApiToken.objects.get()

    revoked = logged_in_api(viewer).post(f"/api/v1/tokens/{token.pk}/revoke/", {"reason": "leaked"}, format="json")
    refused = script.get("/api/v1/tokens/")

    assert revoked.status_code == 200
    assert revoked.json()["state"] == "revoked"
    assert (refused.status_code, refused.json()) == (401, {"detail": "Token revoked."})
    assert refused["WWW-Authenticate"] == "Token"
    entry = AuditEntry.objects.get(action=AuditAction.API_TOKEN_REVOKED)
    assert (entry.actor, entry.reason) == (viewer, "leaked")
    again = logged_in_api(viewer).post(f"/api/v1/tokens/{token.pk}/revoke/", {}, format="json")
    assert again.status_code == 400
    assert "already revoked" in repr(again.json())


def test_an_expired_token_is_refused_with_its_expiry_date(viewer):
    key = api_key(viewer)
    ApiToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    refused = token_api(key).get("/api/v1/tokens/")

    assert refused.status_code == 401
    assert re.fullmatch(r"Token expired on \d{4}-\d\d-\d\d \d\d:\d\d \w+\.", refused.json()["detail"])


def test_an_unknown_key_is_refused(db):
    refused = token_api("ca_" + "x" * 40).get("/api/v1/tokens/")
    assert (refused.status_code, refused.json()) == (401, {"detail": "Invalid token."})


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x", "days": 0}, "days"),
        ({"name": "x", "days": 366}, "days"),
    ],
)
def test_creation_is_refused_with_a_clear_message(viewer, body, field):
    refused = logged_in_api(viewer).post("/api/v1/tokens/", body, format="json")
    assert refused.status_code == 400
    assert field in refused.json()
    assert not ApiToken.objects.exists()


def test_a_name_is_unique_among_a_users_active_tokens_only(viewer, administrator):
    api = logged_in_api(viewer)
    assert api.post("/api/v1/tokens/", {"name": "ivr"}, format="json").status_code == 201

    again = api.post("/api/v1/tokens/", {"name": "ivr"}, format="json")
    assert again.status_code == 400
    assert "already has an active token named 'ivr'" in again.json()["name"][0]
    assert logged_in_api(administrator).post("/api/v1/tokens/", {"name": "ivr"}, format="json").status_code == 201
    api.post(f"/api/v1/tokens/{ApiToken.objects.get(user=viewer).pk}/revoke/", {}, format="json")
    assert api.post("/api/v1/tokens/", {"name": "ivr"}, format="json").status_code == 201


def test_the_default_expiry_is_the_setting_and_the_maximum_its_own_setting(viewer, settings):
    settings.API_TOKEN_DEFAULT_DAYS, settings.API_TOKEN_MAX_DAYS = 7, 10
    api = logged_in_api(viewer)

    made = api.post("/api/v1/tokens/", {"name": "a"}, format="json")
    too_long = api.post("/api/v1/tokens/", {"name": "b", "days": 11}, format="json")

    token = ApiToken.objects.get(pk=made.json()["id"])
    assert token.expires_at - token.created_at == timedelta(days=7)
    assert too_long.status_code == 400
    assert "Between 1 and 10 days." in too_long.json()["days"]


# --- Who may ----------------------------------------------------------------------------------------


def test_a_viewer_sees_and_revokes_only_their_own_tokens(viewer, administrator):
    api_key(administrator, name="admin's")
    mine = api_key(viewer, name="mine")
    theirs = ApiToken.objects.get(user=administrator)
    api = logged_in_api(viewer)

    listed = api.get("/api/v1/tokens/").json()["results"]
    assert [row["name"] for row in listed] == ["mine"]
    assert api.get(f"/api/v1/tokens/{theirs.pk}/").status_code == 404
    assert api.post(f"/api/v1/tokens/{theirs.pk}/revoke/", {}, format="json").status_code == 404
    made_for_other = api.post("/api/v1/tokens/", {"name": "x", "user": administrator.pk}, format="json")
    assert made_for_other.status_code == 403
    theirs.refresh_from_db()
    assert theirs.revoked_at is None
    assert ApiToken.objects.filter(user=administrator).count() == 1
    assert token_api(mine).get("/api/v1/tokens/").status_code == 200


def test_an_administrator_sees_makes_and_revokes_everyones_tokens(viewer, administrator):
    api_key(viewer, name="vera's")
    api = logged_in_api(administrator)

    made = api.post("/api/v1/tokens/", {"name": "for vera", "user": viewer.pk}, format="json")
    names = {row["name"] for row in api.get("/api/v1/tokens/").json()["results"]}
    target = ApiToken.objects.get(name="vera's")
    revoked = api.post(f"/api/v1/tokens/{target.pk}/revoke/", {"reason": "left"}, format="json")

    assert made.status_code == 201
    assert ApiToken.objects.get(name="for vera").user == viewer
    assert ApiToken.objects.get(name="for vera").created_by == administrator
    assert names == {"vera's", "for vera"}
    assert revoked.status_code == 200
    target.refresh_from_db()
    assert (target.revoked_by, target.revoke_reason) == (administrator, "left")


def test_a_user_without_a_role_may_not_use_the_tokens_api(db):
    nobody = UserFactory(username="nobody")
    assert logged_in_api(nobody).get("/api/v1/tokens/").status_code == 403
    assert logged_in_api(nobody).post("/api/v1/tokens/", {"name": "x"}, format="json").status_code == 403
    assert Client().get("/console/tokens/").status_code == 302  # to the log-in page
    assert logged_in_browser(nobody).get("/console/tokens/").status_code == 403


# --- The page ------------------------------------------------------------------------------------


def test_the_page_makes_a_token_and_shows_its_key_once(viewer):
    browser = logged_in_browser(viewer)

    made = browser.post("/console/tokens/new/", {"name": "nightly report", "days": "5"})

    assert made.status_code == 201
    keys = KEY.findall(made.content.decode())
    assert len(set(keys)) == 1
    token = ApiToken.objects.get()
    assert token.key_hash == hashlib.sha256(keys[0].encode()).hexdigest()
    assert made["Cache-Control"] == "no-store"
    later = browser.get("/console/tokens/").content.decode()
    assert "nightly report" in later
    assert token.key_prefix in later
    assert not KEY.search(later)


def test_the_page_refuses_a_post_without_the_csrf_token(viewer):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(viewer)
    assert browser.post("/console/tokens/new/", {"name": "x"}).status_code == 403
    assert not ApiToken.objects.exists()


def test_the_page_explains_a_refused_creation(viewer):
    refused = logged_in_browser(viewer).post("/console/tokens/new/", {"name": "", "days": "5"})
    assert refused.status_code == 400
    assert "Token not made: Give the token a name" in refused.content.decode()


def test_the_page_revokes_with_a_reason_and_the_key_is_refused(viewer):
    key = api_key(viewer, name="cron")
    token = ApiToken.objects.get()
    browser = logged_in_browser(viewer)

    without_reason = browser.post(f"/console/tokens/{token.pk}/revoke/", {"reason": ""})
    token.refresh_from_db()
    assert without_reason.status_code == 302
    assert token.revoked_at is None
    revoked = browser.post(f"/console/tokens/{token.pk}/revoke/", {"reason": "rotated", "next": "/console/tokens/"})

    assert (revoked.status_code, revoked["Location"]) == (302, "/console/tokens/")
    token.refresh_from_db()
    assert token.revoke_reason == "rotated"
    assert token.revoked_by == viewer
    assert token_api(key).get("/api/v1/tokens/").status_code == 401
    assert "Revoked" in browser.get("/console/tokens/").content.decode()


def test_on_the_page_a_viewer_cannot_revoke_another_users_token_an_administrator_can(viewer, administrator):
    api_key(administrator, name="admin's")
    theirs = ApiToken.objects.get()

    logged_in_browser(viewer).post(f"/console/tokens/{theirs.pk}/revoke/", {"reason": "mine now"})
    theirs.refresh_from_db()
    assert theirs.revoked_at is None
    assert "admin&#x27;s" not in logged_in_browser(viewer).get("/console/tokens/").content.decode()

    admin_page = logged_in_browser(administrator).get("/console/tokens/").content.decode()
    assert "admin&#x27;s" in admin_page
    assert 'id="token-user"' in admin_page
    logged_in_browser(administrator).post(f"/console/tokens/{theirs.pk}/revoke/", {"reason": "audit"})
    theirs.refresh_from_db()
    assert theirs.revoked_by == administrator


def test_the_menu_links_the_page(viewer):
    assert 'href="/console/tokens/"' in logged_in_browser(viewer).get("/console/tokens/").content.decode()


# --- The command ---------------------------------------------------------------------------------


def test_create_api_token_prints_the_key_alone_on_its_last_line(viewer):
    out = StringIO()
    call_command("create_api_token", "vera", "--name", "cron", "--days", "3", stdout=out, stderr=StringIO())

    key = out.getvalue().strip().splitlines()[-1]
    assert KEY.fullmatch(key)
    assert token_api(key).get("/api/v1/tokens/").status_code == 200


# --- Tokens of the release before ----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_drf_tokens_of_the_release_before_are_migrated_and_keep_working() -> None:
    before = [("failover", "0017_audit_actions_configuration_edits"), ("authtoken", "0004_alter_tokenproxy_options")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old_apps = executor.loader.project_state(before).apps
    user = old_apps.get_model("auth", "User").objects.create(username="script-owner", is_superuser=True)
    old_key = "0123456789abcdef0123456789abcdef01234567"
    old_apps.get_model("authtoken", "Token").objects.create(user=user, key=old_key)

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    token = ApiToken.objects.get()
    assert (token.name, token.user.username, token.key_prefix) == ("migrated", "script-owner", old_key[:8])
    assert abs(token.expires_at - (timezone.now() + timedelta(days=90))) < timedelta(minutes=5)
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM authtoken_token")
        assert cursor.fetchone()[0] == 0
    assert old_key not in every_stored_text()
    assert token_api(old_key).get("/api/v1/tokens/").status_code == 200


def test_the_django_admin_no_longer_offers_the_plain_text_tokens(admin_client):
    index = admin_client.get("/admin/").content.decode()
    assert "/admin/authtoken/" not in index
