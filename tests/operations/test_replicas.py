"""Two replicas of a service share its database and its consumer group without double effects.

On PostgreSQL (as in production) and the embedded broker: intake and caseplan
each run as two processes on one database. Partners post to both intake
replicas; the two caseplan replicas split intake's partitions. Mid-way one
caseplan replica is killed (SIGKILL, as a crashed pod) and the intake replica
whose relay publishes is stopped (SIGTERM, as a rolling update), so the other
relay takes over. Every event then has had exactly one effect in every
service, and intake's relays together published each event exactly once.
"""

from __future__ import annotations

import httpx
import pytest

from hub.broker import EmbeddedBroker
from hub.testing import _POSTGRES_UNAVAILABLE
from tests.e2e.support import consumed, metric, wait_settled
from tests.harness import Hub, wait_for
from tests.operations.support import (
    SERVICES,
    KeyedPoster,
    assert_applied_once,
    assert_each_published_once,
    retry_unanswered,
    stored_event_ids,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.postgres,
    pytest.mark.skipif(bool(_POSTGRES_UNAVAILABLE), reason=_POSTGRES_UNAVAILABLE or ""),
]

LEADER_LINE = "this relay now publishes for intake"


def applied(hub: Hub, name: str) -> float:
    return consumed(hub, name, "applied")


def test_two_replicas_share_the_work_and_one_dying_doubles_nothing(
    own_broker: EmbeddedBroker, tmp_path, client: httpx.Client
) -> None:
    with Hub(
        tmp_path / "hub", own_broker.bootstrap_servers, backend="postgresql", services=SERVICES
    ) as hub:
        intakes = [hub.replicas("intake")[0], hub.start_replica("intake")]
        caseplans = [hub.replicas("caseplan")[0], hub.start_replica("caseplan")]
        posters = [KeyedPoster(hub, intakes, pause_s=0.02) for _ in range(2)]
        for poster in posters:
            poster.start()
        try:
            # Both caseplan replicas apply records: the group split the partitions.
            wait_for(
                lambda: all(applied(hub, name) >= 3 for name in caseplans),
                30,
                lambda: "the caseplan replicas did not share the work\n" + hub.logs_tail(caseplans),
            )
            # Both intake replicas take requests, and exactly one relay publishes.
            assert all(metric(hub, name, "earlyhelp_http_requests_total") > 0 for name in intakes)
            leaders = [name for name in intakes if LEADER_LINE in hub.log(name)]
            assert len(leaders) == 1, hub.logs_tail(intakes)
            (leader,) = leaders
            (follower,) = set(intakes) - {leader}
            assert metric(hub, follower, "earlyhelp_outbox_published_total") == 0

            hub.kill_service(caseplans[1])  # a crash: its fetched records are not committed
            for poster in posters:
                poster.wait_accepted(5)
            hub.stop_service(leader)  # a rolling update: the other relay takes over
            posters[0].wait_accepted(10)
            wait_for(
                lambda: LEADER_LINE in hub.log(follower),
                30,
                lambda: "the other relay never took over\n" + hub.logs_tail([follower]),
            )
        finally:
            outcomes = [poster.finish() for poster in posters]

        failures = [f for o in outcomes for f in o.failures]
        assert not failures, failures
        referrals = [r for o in outcomes for r in o.accepted]
        referrals += retry_unanswered(client, hub, outcomes, target=follower)

        wait_settled(hub)
        assert_applied_once(hub, referrals)
        events = stored_event_ids(hub)
        assert len(events) == len(referrals)
        # Published once: by the first leader until it stopped, then by the other.
        assert_each_published_once(hub, events)
        assert hub.exit_codes[caseplans[1]] < 0  # it really was killed
        assert consumed(hub, caseplans[0], "dead_lettered") == 0
