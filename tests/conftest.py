"""Persona fixtures shared by every test: administrator, agent, other agent, anonymous."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from tests.factories import AgentFactory, ServerFactory, StaffFactory


@pytest.fixture
def server(db):
    return ServerFactory(name="routing-a")


@pytest.fixture
def admin_user(db):
    return StaffFactory(username="admin")


@pytest.fixture
def agent(server):
    return AgentFactory(user__username="agent", server=server)


@pytest.fixture
def other_agent(server):
    return AgentFactory(user__username="other-agent", server=server)


@pytest.fixture
def anonymous_client() -> Client:
    return Client()


@pytest.fixture
def admin_client(admin_user) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


@pytest.fixture
def agent_client(agent) -> Client:
    client = Client()
    client.force_login(agent.user)
    return client


@pytest.fixture
def admin_api(admin_user) -> APIClient:
    client = APIClient()
    client.force_authenticate(admin_user)
    return client


@pytest.fixture
def agent_api(agent) -> APIClient:
    client = APIClient()
    client.force_authenticate(agent.user)
    return client


@pytest.fixture
def anonymous_api() -> APIClient:
    return APIClient()
