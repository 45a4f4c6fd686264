"""GET /metrics: the Prometheus text format (README: "Metrics").

Two kinds of series, in one registry per app instance (never prometheus_client's global
one, so several apps in one process, as in the tests, keep their own counts):
- the queue's, read from campaign_queue_status at each scrape (the same for every instance:
  the database's): depth, lag, runs by status, sends of the last 5 and 60 minutes, each
  inbox's sends today and its cap;
- this process's: messages by outcome (from each call's answer), the LLM's and the send
  endpoint's latency (as the pipeline measures them) and the AI cost, since it started.

Served twice: `GET /metrics` on the service's port (the status's secret; app.main), and,
with METRICS_PORT, without a secret on a port of its own (app.metrics_port).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, make_asgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import Receive, Scope, Send

from app.models import ProcessQueueResult

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# A call's answer fields that count messages, each an outcome label.
OUTCOMES = ("processed", "failed", "retried", "paused", "skipped", "released", "lease_lost")
# Generation takes seconds (30 s at most); a send, tens of milliseconds to 10 s.
LLM_BUCKETS = (0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, float("inf"))
SEND_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, float("inf"))


class ServiceMetrics:
    """The registry of one app instance and the series this process counts."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._queue = _QueueCollector()
        self.registry.register(self._queue)
        self.messages = Counter(
            "campaign_queue_messages",
            "Messages this process's calls ended or let go, by outcome (a call's answer: "
            "processed = sent in full; failed counts attempts, retried ones included).",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in OUTCOMES:
            self.messages.labels(outcome)  # every outcome shows, 0 before the first call
        self.llm_seconds = Histogram(
            "campaign_queue_llm_seconds",
            "Time of each OpenRouter call that wrote a message (generate) or split it (split).",
            ["step"],
            buckets=LLM_BUCKETS,
            registry=self.registry,
        )
        self.send_seconds = Histogram(
            "campaign_queue_send_seconds",
            "Time of each part's call to the send endpoint that it answered.",
            buckets=SEND_BUCKETS,
            registry=self.registry,
        )
        self.ai_cost = Counter(
            "campaign_queue_ai_cost_usd",
            "OpenRouter's cost of the messages this process wrote, USD.",
            registry=self.registry,
        )
        self._asgi = make_asgi_app(self.registry)

    def call_ended(self, result: ProcessQueueResult) -> None:
        for outcome in OUTCOMES:
            value = getattr(result, outcome)
            if value > 0:
                self.messages.labels(outcome).inc(value)

    def llm_call(self, step: str, elapsed_ms: float | None) -> None:
        if elapsed_ms is not None:
            self.llm_seconds.labels(step).observe(max(elapsed_ms, 0) / 1000)

    def sent_part(self, seconds: float) -> None:
        self.send_seconds.observe(max(seconds, 0))

    def cost(self, usd: float | None) -> None:
        if usd is not None and usd > 0:
            self.ai_cost.inc(usd)

    def exposition(self, status: Mapping[str, Any]) -> bytes:
        """The text format: the queue's gauges from this status, then this process's series.
        (No await between setting the status and writing it: scrapes never mix.)"""
        self._queue.status = status
        try:
            return generate_latest(self.registry)
        finally:
            self._queue.status = None

    async def answer(
        self, status: Mapping[str, Any], scope: Scope, receive: Receive, send: Send
    ) -> None:
        """The exposition as prometheus_client's ASGI app answers it (the format the scraper's
        Accept header asks for, gzip when it takes it). That app writes the text before its
        first await, so the status set here is the one it reads."""
        self._queue.status = status
        try:
            await self._asgi(scope, receive, send)
        finally:
            self._queue.status = None


class _QueueCollector(Collector):
    """Gauges from the status answer in hand (none outside a scrape)."""

    def __init__(self) -> None:
        self.status: Mapping[str, Any] | None = None

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # the families depend on the answer: not checked at registration

    def collect(self) -> Iterator[GaugeMetricFamily]:
        status = self.status
        if status is None:
            return
        queue = _mapping(status.get("queue"))
        for name, key, text in (
            ("due", "due", "Pending messages of running runs due now."),
            ("scheduled", "scheduled", "Pending messages of running runs not yet due."),
            ("in_flight", "in_flight", "Messages claimed now (queued, generating, sending)."),
            (
                "oldest_due_seconds",
                "oldest_due_s",
                "How late the oldest due message is (0: none is due).",
            ),
        ):
            yield GaugeMetricFamily(f"campaign_queue_{name}", text, value=_number(queue.get(key)))
        throughput = _mapping(status.get("throughput"))
        sent = GaugeMetricFamily(
            "campaign_queue_sent_recently",
            "Messages sent in full in the last 5 or 60 minutes (window: 5m, 60m).",
            labels=["window"],
        )
        sent.add_metric(["5m"], _number(throughput.get("sent_5m")))
        sent.add_metric(["60m"], _number(throughput.get("sent_60m")))
        yield sent
        yield GaugeMetricFamily(
            "campaign_queue_runs_active",
            "Running and paused runs.",
            value=_number(status.get("runs_total")),
        )
        runs = GaugeMetricFamily(
            "campaign_queue_runs",
            "Runs of the status's page (the 500 most recently active) by status.",
            labels=["status"],
        )
        by_status = {"running": 0, "paused": 0}
        for run in _rows(status.get("runs")):
            key = str(run.get("status"))
            by_status[key] = by_status.get(key, 0) + 1
        for key, value in sorted(by_status.items()):
            runs.add_metric([key], value)
        yield runs
        sent_today = GaugeMetricFamily(
            "campaign_queue_inbox_sent_today",
            "Messages an inbox sent in its calendar day so far (first parts).",
            labels=["inbox"],
        )
        cap = GaugeMetricFamily(
            "campaign_queue_inbox_daily_cap", "An inbox's daily cap (0: none).", labels=["inbox"]
        )
        for inbox in _rows(status.get("inboxes")):
            label = [str(inbox.get("inbox_id"))]
            sent_today.add_metric(label, _number(inbox.get("sent_today")))
            cap.add_metric(label, _number(inbox.get("daily_cap")))
        yield sent_today
        yield cap


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _rows(value: object) -> list[Mapping[str, Any]]:
    return [row for row in value if isinstance(row, Mapping)] if isinstance(value, list) else []


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value)
