"""The hub under faults: the broker away or crashed, a consumer service restarted.

Each test runs a hub of its own on a broker of its own (`own_broker`, which the
test stops, kills and starts). Tansu keeps everything in memory, so a restarted
broker comes back with no topics, records, offsets or groups at all.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable

import httpx
import pytest

from hub.broker import EmbeddedBroker
from tests.e2e.support import (
    CONSUMERS,
    Poster,
    assert_exactly_once,
    consumed,
    metric,
    projected_ids,
    submit,
    wait_everywhere,
    wait_projected,
    wait_settled,
)
from tests.harness import Hub, count_rows, wait_for

pytestmark = pytest.mark.e2e


def not_ready(client: httpx.Client, hub: Hub, service: str) -> bool:
    response = client.get(hub.url(service) + "/readyz")
    return response.status_code == 503 and response.json()["checks"]["broker"] != "ok"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_referrals_posted_while_the_broker_is_down_arrive_once_it_is_back(
    own_broker: EmbeddedBroker,
    start_hub: Callable[..., Hub],
    client: httpx.Client,
    backend: str,
) -> None:
    hub = start_hub(own_broker.bootstrap_servers, backend)
    before = submit(client, hub, 3)
    wait_everywhere(hub, before)
    wait_settled(hub)

    own_broker.stop()
    failures = metric(hub, "intake", "earlyhelp_outbox_publish_failures_total")
    during = submit(client, hub, 6)  # every one accepted: the outbox holds them
    assert count_rows(hub.database_url("intake"), "outbox") == len(during)
    wait_for(
        lambda: metric(hub, "intake", "earlyhelp_outbox_publish_failures_total") > failures,
        30,
        "the relay never tried to publish while the broker was down",
    )
    assert count_rows(hub.database_url("intake"), "outbox") == len(during)
    assert not_ready(client, hub, "intake"), "intake's /readyz should report the broker"
    own_broker.start()  # empty: no topics, no records, no committed offsets

    everything = before + during
    wait_everywhere(hub, everything)
    wait_settled(hub)
    assert_exactly_once(client, hub, everything)
    for service in CONSUMERS:
        assert consumed(hub, service, "applied") == len(everything), service
        assert consumed(hub, service, "dead_lettered") == 0, service


def test_after_a_broker_crash_republishing_the_store_restores_every_referral_once(
    own_broker: EmbeddedBroker, start_hub: Callable[..., Hub], client: httpx.Client
) -> None:
    hub = start_hub(own_broker.bootstrap_servers)
    poster = Poster(hub, pause_s=0.02)
    poster.start()
    wait_for(
        lambda: len(projected_ids(hub, "caseplan")) >= 4,
        30,
        lambda: "referrals never flowed\n" + hub.logs_tail(),
    )
    # Caseplan is away, so what the broker holds for it when it crashes is certainly lost.
    hub.stop_service("caseplan")
    stopped_at = len(poster.accepted)
    poster.wait_accepted(stopped_at + 6)
    on_the_broker_only = poster.accepted[stopped_at:]
    wait_projected(hub, "allocation", on_the_broker_only)  # so they were published

    own_broker.kill()  # mid-flow: every record, offset and group is gone
    own_broker.start()
    poster.wait_accepted(len(poster.accepted) + 6)  # the flow goes on
    hub.start_service("caseplan")
    poster.wait_accepted(len(poster.accepted) + 4)
    referrals = poster.finish()
    wait_settled(hub)
    lost = {r.referral_id for r in on_the_broker_only} - set(projected_ids(hub, "caseplan"))
    assert lost == {r.referral_id for r in on_the_broker_only}, "the crash lost nothing"

    republish = subprocess.run(
        [sys.executable, "-m", "hub.cli", "republish", "intake", "--from-position", "0"],
        env=hub.env("intake"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = republish.stdout + republish.stderr
    assert republish.returncode == 0, output
    assert f"queued {len(referrals)} events from position 0 in the outbox" in output
    assert "; 0 still queued" in output

    wait_everywhere(hub, referrals)
    wait_settled(hub)
    assert_exactly_once(client, hub, referrals)
    for service in CONSUMERS:
        # The republished copies of what was already applied arrived, and the inbox
        # absorbed them; nothing failed. Allocation and notifications ran throughout:
        # each event had exactly one effect there.
        assert consumed(hub, service, "duplicate") > 0, service
        assert consumed(hub, service, "dead_lettered") == 0, service
        if service != "caseplan":
            assert consumed(hub, service, "applied") == len(referrals), service


def test_a_consumer_service_stopped_and_started_mid_flow_loses_and_doubles_nothing(
    own_broker: EmbeddedBroker, start_hub: Callable[..., Hub], client: httpx.Client
) -> None:
    hub = start_hub(own_broker.bootstrap_servers)
    poster = Poster(hub, pause_s=0.03)
    poster.start()
    wait_for(
        lambda: len(projected_ids(hub, "caseplan")) >= 4,
        30,
        lambda: "referrals never flowed\n" + hub.logs_tail(),
    )
    hub.stop_service("caseplan")
    # uvicorn re-raises the SIGTERM it handled once it has shut down: -15, not -9 (killed).
    assert hub.exit_codes["caseplan"] in (0, -signal.SIGTERM), hub.exit_codes
    assert hub.log("caseplan").count("Application shutdown complete") == 1, hub.log("caseplan")
    poster.wait_accepted(len(poster.accepted) + 10)  # while caseplan is away
    hub.start_service("caseplan")
    poster.wait_accepted(len(poster.accepted) + 5)  # and after it came back
    referrals = poster.finish()

    wait_everywhere(hub, referrals)
    wait_settled(hub)
    assert_exactly_once(client, hub, referrals)
