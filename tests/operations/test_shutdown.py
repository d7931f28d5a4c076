"""Graceful shutdown drains: SIGTERM a consumer and the producer mid-stream, lose nothing.

Partners keep posting (three keep-alive clients, each request with an
Idempotency-Key) while caseplan, then intake, get SIGTERM and come back. What
is proved, with real processes on the embedded broker and SQLite:

- caseplan committed, before it exited, exactly the offsets of the records it
  had applied (so nothing it applied is delivered to it again);
- intake's outbox was empty when the process exited: every event it had
  committed was on the topic, once, and nothing was sent again after restart;
- a request that got no response had not been handled (its key is not in
  intake's idempotency table), so the partner's retry is safe; every accepted
  referral is stored once and reached every service exactly once.
"""

from __future__ import annotations

import os
import signal
import threading

import httpx
import pytest

from hub.broker import EmbeddedBroker
from tests.e2e.support import (
    INTAKE_TOPIC,
    ce_id,
    committed_offsets,
    consumed,
    metric,
    projected_ids,
    read_topic,
    wait_settled,
)
from tests.harness import Hub, count_rows, read_table, wait_for
from tests.operations.support import (
    SERVICES,
    KeyedPoster,
    assert_applied_once,
    assert_each_published_once,
    retry_unanswered,
    stored_event_ids,
    stored_keys,
)

pytestmark = pytest.mark.e2e

# The relay's batch in intake's first run: small, so a backlog outlasts one batch.
BATCH = 5


def applied_and_committed(hub: Hub, service: str) -> tuple[set[str], set[str]]:
    """(intake events in the service's inbox, intake events below its committed offsets)."""
    records = read_topic(hub.bootstrap_servers, INTAKE_TOPIC)
    on_topic = {ce_id(r) for r in records}
    done = committed_offsets(hub.bootstrap_servers, f"earlyhelp-{service}", INTAKE_TOPIC)
    committed = {ce_id(r) for r in records if r.offset < done.get(r.partition, 0)}
    inbox = {row["event_id"] for row in read_table(hub.database_url(service), "inbox")}
    return inbox & on_topic, committed


def stopped_cleanly(hub: Hub, service: str) -> None:
    # uvicorn re-raises the SIGTERM it handled once it has shut down: -15, not -9 (killed).
    assert hub.exit_codes[service] in (0, -signal.SIGTERM), hub.exit_codes
    assert hub.log(service).count("Application shutdown complete") == 1, hub.logs_tail([service])
    assert "still running after" not in hub.log(service), hub.logs_tail([service])


def test_sigterm_mid_stream_drains_consumer_relay_and_requests(
    own_broker: EmbeddedBroker, tmp_path, client: httpx.Client
) -> None:
    with Hub(
        tmp_path / "hub",
        own_broker.bootstrap_servers,
        services=SERVICES,
        extra_env={"EARLYHELP_RELAY_BATCH_SIZE": str(BATCH)},
    ) as hub:
        posters = [KeyedPoster(hub, ["intake"]) for _ in range(3)]
        for poster in posters:
            poster.start()
        try:
            wait_for(
                lambda: len(projected_ids(hub, "caseplan")) >= 10,
                30,
                lambda: "referrals never reached caseplan\n" + hub.logs_tail(),
            )

            # The consumer: SIGTERM while records arrive.
            hub.stop_service("caseplan")
            stopped_cleanly(hub, "caseplan")
            applied, committed = applied_and_committed(hub, "caseplan")
            assert applied, "caseplan applied nothing before it stopped"
            assert committed == applied, (
                f"applied but not committed: {len(applied - committed)}, "
                f"committed but not applied: {len(committed - applied)}"
            )
            posters[0].wait_accepted(5)

            # The producer: SIGTERM while requests are in flight and its relay has a
            # backlog it cannot send yet. The broker is frozen until the outbox holds
            # more than one relay batch, and thawed a second after the signal: the relay
            # thread ends after the call in hand, so only the drain can send the rest.
            os.kill(own_broker.pid, signal.SIGSTOP)
            thaw = threading.Timer(1.0, os.kill, (own_broker.pid, signal.SIGCONT))
            try:
                wait_for(
                    lambda: count_rows(hub.database_url("intake"), "outbox") >= 4 * BATCH,
                    30,
                    "no backlog built up while the broker was frozen",
                )
                hub.extra_env.pop("EARLYHELP_RELAY_BATCH_SIZE")  # for the restart
                thaw.start()
                hub.stop_service("intake")
            finally:
                thaw.cancel()
                os.kill(own_broker.pid, signal.SIGCONT)
            stopped_cleanly(hub, "intake")
            assert count_rows(hub.database_url("intake"), "outbox") == 0, (
                "intake exited with events still in its outbox\n" + hub.logs_tail(["intake"])
            )
            stored_at_exit = stored_event_ids(hub)
            assert_each_published_once(hub, stored_at_exit)
            answered_at_exit = stored_keys(hub)

            hub.start_service("intake")
            hub.start_service("caseplan")
            for poster in posters:
                poster.wait_accepted(5)
        finally:
            outcomes = [poster.finish() for poster in posters]

        failures = [f for o in outcomes for f in o.failures]
        assert not failures, failures
        assert sum(o.refused for o in outcomes) > 0, "no request reached intake while it was down"
        # What uvicorn guarantees: a request it had begun to handle is answered before it
        # exits; one that got no response (a keep-alive connection closed under it, or a
        # connection still in the listen backlog) was never handled.
        unanswered = {a.key for o in outcomes for a, _ in o.unanswered}
        assert not unanswered & answered_at_exit, "a request was handled but never answered"
        referrals = [r for o in outcomes for r in o.accepted]
        referrals += retry_unanswered(client, hub, outcomes)

        wait_settled(hub)
        assert_applied_once(hub, referrals)
        events = stored_event_ids(hub)
        assert len(events) == len(referrals), "a referral was stored that nobody was told of"
        assert_each_published_once(hub, events)
        # The restarted intake sent only what was stored after it started...
        assert metric(hub, "intake", "earlyhelp_outbox_published_total") == len(events) - len(
            stored_at_exit
        )
        # ...and the restarted caseplan was given nothing it had already applied.
        assert consumed(hub, "caseplan", "duplicate") == 0
        assert consumed(hub, "caseplan", "applied") == len(events) - len(applied)
