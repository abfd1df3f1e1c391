"""Log-in lockout after repeated failures (django-axes, configured in settings): on every
log-in form, by user name and address, with a clear message, a configurable threshold and
cool-off, and an audit of every failure."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from axes.models import AccessAttempt, AccessFailureLog
from django.test import Client

from tests.factories import PASSWORD, AgentFactory, StaffFactory

pytestmark = pytest.mark.django_db

LIMIT = 3
OFFICE = "10.1.2.3"
ELSEWHERE = "10.9.9.9"


@pytest.fixture(autouse=True)
def small_limit(settings):
    settings.AXES_FAILURE_LIMIT = LIMIT
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)


@pytest.fixture
def staff(db):
    return StaffFactory(username="operator")


@pytest.fixture
def agent_user(server):
    return AgentFactory(user__username="agent", server=server).user


# Each log-in form, with the user who may use it and where a good log-in lands.
FORMS = {
    "staff": ("/login/", "staff", "/"),
    "agent": ("/agent/login/", "agent_user", "/agent/"),
    "admin": ("/admin/login/?next=/admin/", "staff", "/admin/"),
}


def log_in(path: str, username: str, password: str, address: str = OFFICE):
    return Client(REMOTE_ADDR=address).post(path, {"username": username, "password": password})


@pytest.mark.parametrize("form", FORMS)
def test_after_the_limit_even_the_right_password_is_refused_with_a_clear_message(request, form):
    path, user_fixture, landing = FORMS[form]
    user = request.getfixturevalue(user_fixture)

    failures = [log_in(path, user.username, "wrong").status_code for _ in range(LIMIT - 1)]
    last_failure = log_in(path, user.username, "wrong")
    right_password = log_in(path, user.username, PASSWORD)

    assert failures == [200] * (LIMIT - 1)  # the form again, with its "wrong password" error
    for refused in (last_failure, right_password):
        assert refused.status_code == 429
        assert refused["Retry-After"] == str(15 * 60)
        assert refused["Content-Type"].startswith("text/html")
        text = refused.content.decode()
        assert "Too many failed log-in attempts" in text
        assert "locked for 15 minutes" in text
        assert "ask an administrator to unlock it" in text
        assert "Content-Security-Policy" in refused  # an HTML page like any other
    assert "_auth_user_id" not in right_password.client.session


def test_below_the_limit_a_good_log_in_works_and_forgets_the_failures(staff):
    for _ in range(LIMIT - 1):
        log_in("/login/", "operator", "wrong")

    good = log_in("/login/", "operator", PASSWORD)
    for _ in range(LIMIT - 1):  # counting starts again from zero
        log_in("/login/", "operator", "wrong")
    again = log_in("/login/", "operator", PASSWORD)

    assert (good.status_code, good["Location"]) == (302, "/")
    assert (again.status_code, again["Location"]) == (302, "/")


def test_the_lock_holds_for_that_name_from_that_address_only(staff):
    other = StaffFactory(username="colleague")
    for _ in range(LIMIT):
        log_in("/login/", "operator", "wrong", address=OFFICE)

    same_pair = log_in("/login/", "operator", PASSWORD, address=OFFICE)
    same_name_elsewhere = log_in("/login/", "operator", PASSWORD, address=ELSEWHERE)
    colleague_same_office = log_in("/login/", other.username, PASSWORD, address=OFFICE)

    assert same_pair.status_code == 429
    # Agents share an office's NAT address: one person's typos do not lock out the others.
    assert same_name_elsewhere.status_code == 302
    assert colleague_same_office.status_code == 302


def test_the_lock_is_shared_by_every_log_in_form(staff):
    for _ in range(LIMIT):
        log_in("/login/", "operator", "wrong")

    assert log_in("/admin/login/?next=/admin/", "operator", PASSWORD).status_code == 429


def test_the_lock_ends_after_the_cool_off(staff):
    for _ in range(LIMIT):
        log_in("/login/", "operator", "wrong")
    assert log_in("/login/", "operator", PASSWORD).status_code == 429

    # The cool-off elapses: the failures are now older than it.
    AccessAttempt.objects.update(attempt_time=AccessAttempt.objects.get().attempt_time - timedelta(minutes=16))

    assert log_in("/login/", "operator", PASSWORD).status_code == 302


def test_the_threshold_is_configurable(settings, staff):
    settings.AXES_FAILURE_LIMIT = 1

    assert log_in("/login/", "operator", "wrong").status_code == 429


def test_every_failure_and_the_lockout_are_audited(staff, caplog):
    with caplog.at_level(logging.WARNING, logger="collabadmin.security"):
        for _ in range(LIMIT):
            log_in("/agent/login/", "operator", "wrong")

    failures = list(AccessFailureLog.objects.order_by("attempt_time"))
    assert [(entry.username, entry.ip_address, entry.path_info) for entry in failures] == [
        ("operator", OFFICE, "/agent/login/")
    ] * LIMIT
    assert [entry.locked_out for entry in failures] == [False] * (LIMIT - 1) + [True]
    (attempt,) = AccessAttempt.objects.all()
    assert attempt.failures_since_start == LIMIT
    assert "wrong" not in attempt.post_data  # the password is masked (AXES_SENSITIVE_PARAMETERS)
    (record,) = [record for record in caplog.records if getattr(record, "event", None) == "login.locked_out"]
    assert (record.username, record.ip_address, record.path) == ("operator", OFFICE, "/agent/login/")


def test_an_administrator_can_unlock_with_the_management_command(staff):
    from django.core.management import call_command

    for _ in range(LIMIT):
        log_in("/login/", "operator", "wrong")

    call_command("axes_reset_username", "operator")

    assert log_in("/login/", "operator", PASSWORD).status_code == 302


def test_behind_a_trusted_proxy_the_forwarded_client_address_is_counted(settings, staff):
    settings.TRUSTED_PROXY_COUNT = 1
    balancer = "192.0.2.10"

    def through_balancer(client_address: str, password: str, spoofed: str = ""):
        forwarded = f"{spoofed}, {client_address}" if spoofed else client_address
        return Client(REMOTE_ADDR=balancer, HTTP_X_FORWARDED_FOR=forwarded).post(
            "/login/", {"username": "operator", "password": password}
        )

    for _ in range(LIMIT):
        through_balancer(OFFICE, "wrong", spoofed="203.0.113.7")  # a forged left part changes nothing

    assert through_balancer(OFFICE, PASSWORD).status_code == 429
    assert through_balancer(ELSEWHERE, PASSWORD).status_code == 302
    assert set(AccessFailureLog.objects.values_list("ip_address", flat=True)) == {OFFICE}


def test_the_lockout_page_is_served_through_the_asgi_handler_too(staff):
    # Production runs the middleware chain asynchronously (uvicorn); axes calls the lockout
    # response differently there.
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    async def attempts() -> list:
        client = AsyncClient()
        return [
            await client.post("/login/", {"username": "operator", "password": password})
            for password in ["wrong"] * LIMIT + [PASSWORD]
        ]

    *_, last_failure, right_password = async_to_sync(attempts)()

    for refused in (last_failure, right_password):
        assert refused.status_code == 429
        assert "Too many failed log-in attempts" in refused.content.decode()


def test_log_ins_log_outs_and_lockouts_are_in_the_audit_history(client, settings):
    from failover.choices import AuditAction
    from failover.models import AuditEntry
    from tests.factories import PASSWORD, StaffFactory

    settings.AXES_FAILURE_LIMIT = 2
    staff = StaffFactory(username="olivia")
    assert client.post("/login/", {"username": "olivia", "password": PASSWORD}).status_code == 302
    client.post("/logout/")
    for _ in range(2):
        client.post("/login/", {"username": "olivia", "password": "wrong"})

    entries = list(
        AuditEntry.objects.filter(object_id=str(staff.pk)).order_by("id").values_list("action", "actor_name")
    )
    assert entries == [
        (AuditAction.AUTH_LOGGED_IN, "user:olivia"),
        (AuditAction.AUTH_LOGGED_OUT, "user:olivia"),
        (AuditAction.AUTH_LOCKED_OUT, "anonymous@127.0.0.1"),
    ]
