"""The service's parts, built once in the lifespan: the RPC seam and Store, the HTTP clients,
the pipeline and the processor; the invocations still running; ServicesDep for routes."""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import dataclass, field
from typing import Annotated

import httpx
from fastapi import Depends, Request

from app.ai.openrouter import OpenRouterClient
from app.api_models import ProcessQueueBody
from app.delivery.sender import Sender
from app.metrics import ServiceMetrics
from app.models import ProcessQueueResult
from app.processing.pipeline import MessagePipeline
from app.processing.processor import QueueProcessor
from app.settings import Settings
from app.store.rpc import Rpc
from app.store.store import FailureBrake, Pacing, Store


@dataclass
class Services:
    settings: Settings
    rpc: Rpc
    store: Store
    http_clients: list[httpx.AsyncClient]
    processor: QueueProcessor
    metrics: ServiceMetrics = field(default_factory=ServiceMetrics)
    running: set[asyncio.Future[ProcessQueueResult]] = field(default_factory=set)


async def build_services(settings: Settings) -> Services:
    rpc: Rpc
    if settings.database_url is not None:
        from app.store.postgres import PostgresRpc

        rpc = PostgresRpc(
            settings.database_url.get_secret_value(),
            statement_cache_size=settings.statement_cache_size,
            max_size=settings.database_pool_max_size,
        )
    else:
        from app.store.supabase import SupabaseRpc

        assert settings.supabase_url
        assert settings.supabase_service_role_key
        rpc = await SupabaseRpc.connect(
            settings.supabase_url, settings.supabase_service_role_key.get_secret_value()
        )
    store = Store(rpc)
    # One client per far end: httpcore scans its whole pool on every request, so two small
    # pools cost less CPU than one shared one (bench/overhead.py).
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=50)
    openrouter_http, send_http = httpx.AsyncClient(limits=limits), httpx.AsyncClient(limits=limits)
    metrics = ServiceMetrics()
    pipeline = MessagePipeline(
        store,
        OpenRouterClient(openrouter_http, settings),
        Sender(send_http, settings),
        default_model=settings.default_model,
        send_timeout_s=settings.send_timeout_s,
        pacing=Pacing.from_settings(settings),
        brake=FailureBrake(settings.inbox_brake_failures, settings.inbox_brake_hours),
        reply_stop_days=settings.reply_stop_days,
        repetition_guard=settings.repetition_guard,
        lead_local_window=settings.lead_local_window,
        metrics=metrics,
    )
    worker = f"{socket.gethostname()}:{os.getpid()}"
    processor = QueueProcessor(store, pipeline, settings, worker)
    return Services(settings, rpc, store, [openrouter_http, send_http], processor, metrics=metrics)


async def close_services(services: Services) -> None:
    """Lets calls whose caller hung up record their work, then closes every client."""
    if services.running:
        await asyncio.wait(services.running, timeout=services.settings.time_budget_s + 30)
    for client in services.http_clients:
        await client.aclose()
    await services.rpc.close()


def start_invocation(
    services: Services, body: ProcessQueueBody
) -> asyncio.Task[ProcessQueueResult]:
    """One invocation as a task, kept referenced in services.running until it ends."""
    processor = services.processor
    work = asyncio.ensure_future(
        processor.process(
            processor.request(
                batch_size=body.batch_size,
                concurrency=body.concurrency,
                max_messages=body.max_messages,
                time_budget_s=body.time_budget_s,
                run_id=body.run_id,
                requeue_failed=body.requeue_failed,
            )
        )
    )
    services.running.add(work)
    work.add_done_callback(services.running.discard)
    work.add_done_callback(lambda done: _count_call(services.metrics, done))
    return work


def _count_call(metrics: ServiceMetrics, work: asyncio.Future[ProcessQueueResult]) -> None:
    if not work.cancelled() and work.exception() is None:
        metrics.call_ended(work.result())


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
