"""How a failure was noticed, against real simulator processes (issue 15, point 5).

A killed peer's connection drops the moment it dies: the failure *is* its detection, so
the event's detection time used to read "0.0 ms", a figure nobody measured. The event now
records how it was noticed, and the timeline, the overview, the API and the metrics say
"at once: <how>" for it, while a stalled peer (probes timing out) keeps its measured time.
"""

from __future__ import annotations

import re
import signal

import pytest

from failover.choices import Detection, FailoverKind
from failover.models import FailoverEvent
from failover.monitor.runner import monitor_in_thread
from tests.failover.test_monitor_with_simulators import (  # noqa: F401  (fixtures)
    both_up_and_one_connected,
    connected_name,
    fast_policy,
    simulated_pair,
)
from tests.peering.conftest import start_peer  # noqa: F401  (fixture)
from tests.test_metrics import sample, scrape
from tests.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

DROPPED = {Detection.CONNECTION_CLOSED, Detection.CONNECTION_RESET}
DETECTION = "collabadmin_failover_detection_seconds"


def _switch_after(link, processes, act) -> FailoverEvent:
    with monitor_in_thread():
        active, standby = both_up_and_one_connected(link)
        try:
            act(processes[active])
            wait_until(lambda: connected_name(link) == standby, timeout=10, message="switch to the standby")
        finally:
            processes[active].signal(signal.SIGCONT)
    return FailoverEvent.objects.get(link=link, kind=FailoverKind.AUTOMATIC)


def test_a_killed_peer_is_detected_at_once_not_in_zero_ms(simulated_pair, admin_client, admin_api):  # noqa: F811
    link, processes = simulated_pair

    event = _switch_after(link, processes, lambda process: process.kill())

    assert event.detection in DROPPED, event.detection
    assert event.failed_at == event.detected_at
    assert (event.detected_at_once, event.detection_seconds) == (True, None)
    shown = f"at once: {event.get_detection_display()}"
    for page in ("/console/timeline/", "/"):
        html = admin_client.get(page).content.decode()
        assert shown in html, page
        # No "0.0 ms" figure anywhere (a switch-over time such as 10.0 ms is fine).
        assert not re.search(r'class="num">0\.0</span> ms', html), page
    body = admin_api.get(f"/api/v1/events/{event.pk}/").json()
    assert (body["detection"], body["detected_at_once"], body["detection_seconds"]) == (
        event.detection,
        True,
        None,
    )
    families = scrape()
    # No detection-time observation for it; it is counted by how it was noticed instead.
    assert sample(families, DETECTION, f"{DETECTION}_count") == 0
    counter = "collabadmin_failure_detections"
    assert sample(families, counter, f"{counter}_total", detection=event.detection, at_once="true") == 1


def test_a_stalled_peer_keeps_its_measured_detection_time(simulated_pair, admin_client, admin_api):  # noqa: F811
    link, processes = simulated_pair

    event = _switch_after(link, processes, lambda process: process.signal(signal.SIGSTOP))

    # The simulators push heartbeats (the default policy asks for them): their silence is
    # what gives a stalled peer away, after a measured while.
    assert event.detection == Detection.HEARTBEAT
    assert event.detected_at_once is False
    assert 0.05 < event.detection_seconds < 10
    html = admin_client.get("/console/timeline/").content.decode()
    assert "heartbeat silent" in html
    assert "at once" not in html
    assert admin_api.get(f"/api/v1/events/{event.pk}/").json()["detection_seconds"] == event.detection_seconds
    families = scrape()
    assert sample(families, DETECTION, f"{DETECTION}_count") == 1
    counter = "collabadmin_failure_detections"
    assert sample(families, counter, f"{counter}_total", detection="heartbeat", at_once="false") == 1
