"""GET /metrics (README: "Metrics"), over real HTTP: the status's secret, the Prometheus text
format as prometheus_client parses it, this process's counts after a call, and the queue's
gauges as the status answers them."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.ai.openrouter import Completion
from app.ai.split import split_message
from app.metrics import ServiceMetrics
from app.models import ProcessQueueResult, SplitterConfig
from app.sandbox.seed import seed_campaign
from app.sandbox.stubs import Fault
from tests.service import Service
from tests.stubs import CRON_SECRET

POSTGRES = pytest.mark.parametrize("store_kind", ["postgres"])


async def scrape(service: Service, headers: dict[str, str] | None = None) -> Any:
    if headers is None:
        headers = {"Authorization": f"Bearer {CRON_SECRET}"}
    return await service.http.get(service.url + "/metrics", headers=headers, timeout=30)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the text format: (name, sorted labels) -> value."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@POSTGRES
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-secret-0123456789"}, {"X-Cron-Secret": "nope"}],
)
async def test_metrics_without_the_secret_is_401(service: Service, headers: dict[str, str]) -> None:
    response = await scrape(service, headers)
    assert response.status_code == 401
    assert response.json() == {"success": False, "error": "unauthorized"}


@POSTGRES
@pytest.mark.parametrize(
    "headers",
    [{"Authorization": f"Bearer {CRON_SECRET}"}, {"X-Cron-Secret": CRON_SECRET}],
)
async def test_metrics_with_the_secret_is_the_prometheus_text_format(
    service: Service, headers: dict[str, str]
) -> None:
    response = await scrape(service, headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    found = samples(response.text)
    assert found[("campaign_queue_due", ())] == 0
    assert found[("campaign_queue_messages_total", (("outcome", "processed"),))] == 0


@POSTGRES
async def test_a_call_that_sent_3_messages_is_counted(
    service: Service, conn: asyncpg.Connection
) -> None:
    await seed_campaign(conn, leads=3)
    answer = (await service.process()).json()
    assert answer["processed"] == 3

    found = samples((await scrape(service)).text)

    assert found[("campaign_queue_messages_total", (("outcome", "processed"),))] == 3
    assert found[("campaign_queue_messages_total", (("outcome", "failed"),))] == 0
    assert found[("campaign_queue_llm_seconds_count", (("step", "generate"),))] == 3
    assert found[("campaign_queue_send_seconds_count", ())] == 3  # one part each
    assert found[("campaign_queue_send_seconds_sum", ())] > 0
    assert found[("campaign_queue_ai_cost_usd_total", ())] == pytest.approx(
        sum(service.stubs.openrouter.costs)
    )
    assert found[("campaign_queue_sent_recently", (("window", "5m"),))] == 3


@POSTGRES
async def test_the_queue_gauges_are_the_status(service: Service, conn: asyncpg.Connection) -> None:
    await seed_campaign(conn, leads=4)
    paused = await seed_campaign(conn, leads=2, run_status="paused")
    await seed_campaign(conn, leads=1, split_messages=True)
    await service.process({"run_id": str(paused.run_id)})  # nothing: the run is paused

    status = (
        await service.http.get(
            service.url + "/status?limit=500",
            headers={"Authorization": f"Bearer {CRON_SECRET}"},
        )
    ).json()
    found = samples((await scrape(service)).text)

    queue = status["queue"]
    assert found[("campaign_queue_due", ())] == queue["due"] == 5
    assert found[("campaign_queue_scheduled", ())] == queue["scheduled"]
    assert found[("campaign_queue_in_flight", ())] == queue["in_flight"]
    assert found[("campaign_queue_oldest_due_seconds", ())] == queue["oldest_due_s"]
    assert found[("campaign_queue_runs_active", ())] == status["runs_total"] == 3
    assert found[("campaign_queue_runs", (("status", "running"),))] == 2
    assert found[("campaign_queue_runs", (("status", "paused"),))] == 1
    assert status["inboxes"]
    for inbox in status["inboxes"]:
        label = (("inbox", inbox["inbox_id"]),)
        assert found[("campaign_queue_inbox_sent_today", label)] == inbox["sent_today"]
        assert found[("campaign_queue_inbox_daily_cap", label)] == inbox["daily_cap"]


def test_each_app_instance_counts_in_its_own_registry() -> None:
    one, two = ServiceMetrics(), ServiceMetrics()  # the global registry would refuse the second
    one.call_ended(ProcessQueueResult(processed=2, failed=1, retried=1))
    first = samples(one.exposition({}).decode())
    second = samples(two.exposition({}).decode())
    assert first[("campaign_queue_messages_total", (("outcome", "processed"),))] == 2
    assert first[("campaign_queue_messages_total", (("outcome", "retried"),))] == 1
    assert second[("campaign_queue_messages_total", (("outcome", "processed"),))] == 0


@POSTGRES
async def test_split_calls_and_failures_are_counted(
    service: Service, conn: asyncpg.Connection
) -> None:
    """The LLM histogram's split step, and the outcomes of a call that failed messages: each
    as the OpenRouter stub and the call's answer count them."""
    await seed_campaign(conn, leads=3, split_messages=True, min_chars_to_split=50)
    first = (await service.process()).json()
    stubs = service.stubs
    assert (first["processed"], stubs.openrouter.splits) == (3, 3)
    failing = await seed_campaign(conn, leads=2)
    stubs.send.faults.ratios = {Fault.INVALID_NUMBER: 1.0}  # 400: failed for good, no retry
    second = (await service.process({"run_id": str(failing.run_id)})).json()
    assert second["failed"] == 2, second

    found = samples((await scrape(service)).text)

    assert found[("campaign_queue_llm_seconds_count", (("step", "split"),))] == 3
    assert found[("campaign_queue_llm_seconds_count", (("step", "generate"),))] == 5
    assert found[("campaign_queue_messages_total", (("outcome", "processed"),))] == 3
    assert found[("campaign_queue_messages_total", (("outcome", "failed"),))] == 2
    assert found[("campaign_queue_messages_total", (("outcome", "retried"),))] == second["retried"]
    # Every answered send of the split messages' parts; the refused ones are not timed.
    assert found[("campaign_queue_send_seconds_count", ())] == len(stubs.send.deliveries)
    assert found[("campaign_queue_ai_cost_usd_total", ())] == pytest.approx(
        sum(stubs.openrouter.costs)
    )


class _InstantSplitter:
    """A model that answers the split at once, in process: no HTTP call can be this fast, and
    none is needed to show what a sub-millisecond answer measures."""

    async def request_split(self, *, text: str, **_: object) -> Completion:
        half = len(text) // 2
        cut = text.index(" ", half)
        return Completion(json.dumps([text[:cut], text[cut + 1 :]]), tokens=10, cost_usd=None)


async def test_a_split_answered_in_under_a_millisecond_is_still_a_split_call() -> None:
    """Its elapsed_ms is 0, as a message too short to split says; the pipeline counted the
    split step from elapsed_ms and missed such calls (the loopback test above lost one of
    three in a full run)."""
    text = "Olá Ana! Vi o trabalho de vocês na Acme e fiquei curioso. Faz sentido conversarmos?"
    result = await split_message(
        _InstantSplitter(),
        text,
        model="m",
        max_parts=2,
        splitter=SplitterConfig(min_chars_to_split=10),
    )
    short = await split_message(
        _InstantSplitter(), "Oi!", model="m", max_parts=2, splitter=SplitterConfig()
    )

    assert len(result.parts) == 2
    assert result.fallback_reason is None
    assert (result.elapsed_ms, result.asked) == (0, True)
    assert (short.elapsed_ms, short.asked) == (0, False)
