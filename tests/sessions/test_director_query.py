"""The director's one-query choice (sessions/services/director.py) picks exactly the server
the plain ORM formulation picks: healthy or unmonitored routing servers, never an excluded
one; degraded ones last; then first one with the skill group, then one that can serve it now (Media Blender link
connected, a ready enabled agent of the group with a free slot), then the fewest open
sessions, then by name."""

from __future__ import annotations

import pytest
from django.db.models import (
    BooleanField,
    Case,
    Count,
    Exists,
    ExpressionWrapper,
    F,
    IntegerField,
    OuterRef,
    Q,
    Value,
    When,
)
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from failover.choices import Health, LinkState, PeerKind, ServerRole
from failover.models import Link, Server
from failover.services.topology import server_ensure
from sessions.choices import ROUTED_STATES, AgentState, EndReason, SessionState
from sessions.models import Agent, CollaborationSession, SkillGroup
from sessions.services.director import NoHealthyServer, SkillGroupKey, choose_server
from sessions.services.requests import session_request
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

GROUP_NAMES = ("Sales", "Billing")
ICM_IDS = ("5001", "5002", "5101")

agents = st.lists(
    st.tuples(
        st.sampled_from([AgentState.READY, AgentState.READY, AgentState.NOT_READY, AgentState.LOGGED_OUT]),
        st.booleans(),  # enabled (a disabled agent is logged out: the database insists)
        st.integers(1, 2),  # max sessions
        st.sets(st.sampled_from(GROUP_NAMES)),  # skill groups (of its own server)
        st.integers(0, 2),  # sessions it holds (in transit or active)
    ),
    max_size=3,
)

# The server's skill groups, name -> ICM id: names and ids shared between servers or not.
skill_groups = st.tuples(st.sets(st.sampled_from(GROUP_NAMES)), st.permutations(ICM_IDS)).map(
    lambda drawn: {name: drawn[1][i] for i, name in enumerate(GROUP_NAMES) if name in drawn[0]}
)

servers = st.lists(
    st.tuples(
        st.sampled_from([ServerRole.ROUTING, ServerRole.ROUTING, ServerRole.AGENT]),
        st.sampled_from(list(Health)),
        st.booleans(),  # monitored (has a base_url)
        st.integers(0, 3),  # queued sessions
        st.integers(0, 2),  # ended sessions
        st.booleans(),  # excluded
        st.booleans(),  # Media Blender link connected
        skill_groups,
        agents,
        st.booleans(),  # degraded
    ),
    min_size=0,
    max_size=5,
)

keys = st.one_of(
    st.none(),
    st.builds(SkillGroupKey, name=st.sampled_from((*GROUP_NAMES, "Legal")), icm_id=st.sampled_from((None, *ICM_IDS))),
)


def orm_choice(exclude_ids: list[int], key: SkillGroupKey | None) -> Server | None:
    """The same choice in the ORM's words (the director's query is hand-written for speed)."""
    match = Q(name=key.name) | Q(icm_id=key.icm_id) if key and key.icm_id else Q(name=key.name) if key else Q()
    groups = SkillGroup.objects.filter(match, server=OuterRef("pk"))
    free = (
        Agent.objects.filter(server=OuterRef("pk"), enabled=True, state=AgentState.READY)
        .annotate(load=Count("sessions", filter=Q(sessions__state__in=ROUTED_STATES)))
        .filter(load__lt=F("max_sessions"))
    )
    if key is not None:
        in_group = SkillGroup.objects.filter(match, server=OuterRef("server"), agents=OuterRef("pk"))
        free = free.filter(Exists(in_group))
    link_up = Link.objects.filter(server=OuterRef("pk"), kind=PeerKind.MEDIA_BLENDER, state=LinkState.CONNECTED)
    return (
        Server.objects.filter(role=ServerRole.ROUTING)
        .filter(Q(health=Health.UP) | Q(base_url=""), drain_started_at__isnull=True)
        .exclude(pk__in=exclude_ids)
        .annotate(
            slow=Case(When(degraded_since__isnull=True, then=Value(0)), default=Value(1), output_field=IntegerField()),
            has_group=Exists(groups) if key is not None else ExpressionWrapper(Q(), output_field=BooleanField()),
            serves_now=ExpressionWrapper(Exists(link_up) & Exists(free), output_field=BooleanField()),
            load=Count("sessions", filter=~Q(sessions__state=SessionState.ENDED)),
        )
        .order_by("slow", F("has_group").desc(), F("serves_now").desc(), "load", "name")
        .first()
    )


def make_world(drawn: list[tuple]) -> list[int]:
    CollaborationSession.objects.all().delete()
    Agent.objects.all().delete()
    Server.objects.all().delete()
    excluded = []
    for i, (role, health, monitored, queued, ended, exclude, link_up, groups, staff, *slow) in enumerate(drawn):
        degraded = bool(slow and slow[0])  # drawn worlds say; hand-made ones are never degraded
        # Names share a prefix and collide in load on purpose: the tie-break must match too.
        server = server_ensure(
            name=f"srv-{(i * 7) % 10}-{i}", role=role, base_url=f"http://s{i}.example.test" if monitored else ""
        )
        Server.objects.filter(pk=server.pk).update(health=health, degraded_since=_now() if degraded else None)
        link_state = LinkState.CONNECTED if link_up else LinkState.DOWN
        Link.objects.filter(server=server, kind=PeerKind.MEDIA_BLENDER).update(state=link_state)
        own = {name: SkillGroup.objects.create(server=server, name=name, icm_id=icm) for name, icm in groups.items()}
        for n in range(queued):
            _session(server, f"q{n}")
        for n in range(ended):
            _session(server, f"e{n}", state=SessionState.ENDED, end_reason=EndReason.CALLER_LEFT, ended_at=_now())
        for j, (state, enabled, max_sessions, names, held) in enumerate(staff):
            _agent(server, f"{i}-{j}", state, enabled, max_sessions, [own[n] for n in names if n in own], held)
        if exclude:
            excluded.append(server.pk)
    return excluded


def _now():
    return timezone.now()


def _session(server: Server, name: str, **fields: object) -> CollaborationSession:
    return CollaborationSession.objects.create(
        server=server, caller_name=name, queued_at=_now(), any_skill_group=True, **fields
    )


def _agent(server, icm_id, state, enabled, max_sessions, groups, held) -> None:
    state = state if enabled else AgentState.LOGGED_OUT
    agent = Agent.objects.create(
        user=UserFactory(), server=server, icm_id=icm_id, enabled=enabled, state=state, max_sessions=max_sessions
    )
    agent.skill_groups.set(groups)
    for n in range(held):
        _session(server, f"h{n}", state=SessionState.ACTIVE, agent=agent)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drawn=servers, key=keys)
def test_the_one_query_choice_is_the_orm_choice(drawn, key):
    excluded = make_world(drawn)

    expected = orm_choice(excluded, key)
    if expected is None:
        with pytest.raises(NoHealthyServer):
            choose_server(skill_group=key, exclude_ids=excluded)
    else:
        assert choose_server(skill_group=key, exclude_ids=excluded) == expected


def test_the_choice_is_one_query(django_assert_num_queries):
    make_world([(ServerRole.ROUTING, Health.UP, True, 1, 1, False, True, {"Sales": "5001"}, [])] * 3)
    with django_assert_num_queries(1):
        choose_server(skill_group=SkillGroupKey(name="Sales"), exclude_ids=[1, 2])
    with django_assert_num_queries(1):
        choose_server()


def test_a_caller_goes_where_an_agent_of_the_skill_group_is_free_even_if_that_server_is_busier():
    # Issue 15, point 8: a Sales caller was sent to routing-b (no agent logged in, three
    # callers ahead) while routing-a had a ready Sales agent with a free slot.
    groups = {"Sales": "5001", "Billing": "5003"}
    sales_agent_one_slot_free = (AgentState.READY, True, 2, {"Sales"}, 1)
    make_world(
        [
            (ServerRole.ROUTING, Health.UP, True, 3, 0, False, True, groups, [sales_agent_one_slot_free]),
            (ServerRole.ROUTING, Health.UP, True, 0, 0, False, True, groups, []),
        ]
    )
    a, b = Server.objects.order_by("pk")

    assert session_request(caller_name="Sam", skill_group_name="Sales", actor="caller:web").server == a
    # Nobody can take Billing now on either server: the least loaded gets it.
    assert session_request(caller_name="Bill", skill_group_name="Billing", actor="caller:web").server == b
    # Any agent will do: routing-a's Sales agent still has a free slot.
    assert session_request(caller_name="Ann", actor="caller:web").server == a
    Agent.objects.filter(server=a).update(state=AgentState.NOT_READY)
    assert session_request(caller_name="Sue", skill_group_name="Sales", actor="caller:web").server == b


def test_a_server_whose_media_blender_link_is_down_cannot_serve_now():
    ready = (AgentState.READY, True, 2, {"Sales"}, 0)
    make_world(
        [
            (ServerRole.ROUTING, Health.UP, True, 0, 0, False, False, {"Sales": "5001"}, [ready]),
            (ServerRole.ROUTING, Health.UP, True, 2, 0, False, True, {"Sales": "5001"}, [ready]),
        ]
    )
    assert choose_server(skill_group=SkillGroupKey(name="Sales")).name == "srv-7-1"


def test_a_skill_group_is_matched_by_name_or_by_icm_id():
    # What adoption asks for a session moved off a failed server: its group's name and id.
    ready_sales = (AgentState.READY, True, 2, {"Sales"}, 0)
    make_world(
        [
            (ServerRole.ROUTING, Health.UP, True, 0, 0, False, True, {"Billing": "5101"}, []),
            (ServerRole.ROUTING, Health.UP, True, 2, 0, False, True, {"Sales": "5003"}, [ready_sales]),
        ]
    )
    wanted = SkillGroupKey(name="Billing", icm_id="5003")  # renamed "Sales" on the second server
    assert choose_server(skill_group=wanted).name == "srv-7-1"
    assert choose_server(skill_group=SkillGroupKey(name="Billing")).name == "srv-0-0"


def test_no_healthy_routing_server_is_still_refused():
    make_world(
        [(ServerRole.ROUTING, Health.DOWN, True, 0, 0, False, True, {}, [(AgentState.READY, True, 2, set(), 0)])]
    )
    with pytest.raises(NoHealthyServer):
        choose_server()


def test_a_degraded_server_takes_a_caller_only_when_no_other_can():
    ready = (AgentState.READY, True, 2, {"Sales"}, 0)
    make_world(
        [
            (ServerRole.ROUTING, Health.UP, True, 0, 0, False, True, {"Sales": "5001"}, [ready], True),
            (ServerRole.ROUTING, Health.UP, True, 3, 0, False, False, {"Sales": "5001"}, []),
        ]
    )
    slow, other = Server.objects.order_by("pk")
    assert choose_server(skill_group=SkillGroupKey(name="Sales")) == other
    assert choose_server(skill_group=SkillGroupKey(name="Sales"), exclude_ids=[other.pk]) == slow
