"""`python -m app demo`: one campaign run end to end on this machine, then it stops.

Embedded Postgres, sql/ applied, two seeded campaigns (one inbox splits its messages), the
service on 127.0.0.1, and POST /process-queue as the scheduler sends it. OpenRouter and the
WhatsApp send endpoint are loopback stubs, whatever the environment holds: only with
`real=True` (`python -m app demo --real`) are the real ones called, and then only those whose
keys are set (OPENROUTER_API_KEY; SEND_URL with SUPABASE_SERVICE_ROLE_KEY). A key exported
for another purpose never sends WhatsApp messages to the demo's made-up numbers.

Each inbox is paced (docs/architecture.md, "Pacing"). Against the send stub the gap is short
(0.3-0.6 s) so
the demo ends in seconds, and a table shows when each message's first part reached the stub,
inbox by inbox. Against a real send endpoint the pacing is the service's own (INBOX_* from the
environment, else the defaults): a real number is never sent a burst.
"""

from __future__ import annotations

import json
import os
import secrets
import time
import uuid
from itertools import pairwise
from typing import Any

import asyncpg
import httpx

from app.main import create_app
from app.sandbox.database import create_migrated_database, running_postgres
from app.sandbox.demo_console import seed_console_data, serve_until_stopped
from app.sandbox.seed import seed_campaign
from app.sandbox.server import LoopbackServer
from app.sandbox.stubs import SEND_PATH, Latency, OpenRouterStub, SendStub
from app.settings import Settings
from app.status import render
from app.store.postgres import init_connection
from app.store.store import Pacing

DEMO_MIN_GAP_S, DEMO_MAX_GAP_S = 0.3, 0.6  # the stub's pace: short, so the demo ends soon


async def run_demo(
    leads: int = 40, *, real: bool = False, console: bool = False, port: int = 0
) -> int:
    """console: then data for every part of the console, and the service stays up on `port`
    (0: a free one) with a made-up OPERATOR_TOKEN until SIGINT or SIGTERM
    (app.sandbox.demo_console)."""
    if leads < 2:
        print("error: --leads must be at least 2")
        return 2
    started = time.monotonic()
    openrouter_stub = OpenRouterStub(latency=Latency(median_ms=150, sigma=0.6, seed=42))
    send_stub = SendStub(latency=Latency(median_ms=40, sigma=0.3, seed=43))
    stub_servers = [LoopbackServer(openrouter_stub.app), LoopbackServer(send_stub.app)]
    real_openrouter = real and bool(os.environ.get("OPENROUTER_API_KEY"))
    real_send = real and bool(
        os.environ.get("SEND_URL") and os.environ.get("SUPABASE_SERVICE_ROLE_KEY")
    )

    print(
        "campaign-queue demo: embedded Postgres, "
        f"OpenRouter {'(real)' if real_openrouter else '(loopback stub)'}, "
        f"WhatsApp send {'(real)' if real_send else '(loopback stub)'}"
    )
    with running_postgres() as server:
        dsn = await create_migrated_database(server.dsn, "campaign_demo")
        conn = await asyncpg.connect(dsn)
        await init_connection(conn)
        try:
            plain = await seed_campaign(conn, leads=leads - leads // 2)
            split = await seed_campaign(
                conn,
                leads=leads // 2,
                split_messages=True,
                max_split_parts=3,
                min_chars_to_split=120,
                delay_between_messages_ms=100,
            )
            print(
                f"seeded {leads} leads over two inboxes (one splits its messages); messages due now"
            )
            for stub in stub_servers:
                stub.start()
            settings = _settings(
                dsn,
                stub_servers[0].url,
                stub_servers[1].url,
                openrouter_stub,
                send_stub,
                real_openrouter,
                real_send,
                console,
            )
            secret = settings.cron_secret.get_secret_value() if settings.cron_secret else ""
            print(
                f"pacing per inbox: {settings.inbox_min_gap_s:g}-{settings.inbox_max_gap_s:g} s "
                "between the first parts of two messages, daily cap "
                f"{settings.inbox_daily_cap or 'off'}"
            )
            service = LoopbackServer(create_app(settings), lifespan=True, port=port)
            service.start()
            try:
                print(f"service on {service.url}; POST /process-queue as the scheduler does\n")
                async with httpx.AsyncClient(timeout=120) as http:
                    response = await http.post(
                        service.url + "/process-queue",
                        headers={"Authorization": f"Bearer {secret}"},
                        # max_messages: the call ends once every lead is done, instead of
                        # looking for due work for one more gap.
                        json={"concurrency": 10, "batch_size": 10, "max_messages": leads},
                    )
                print(f"HTTP {response.status_code}")
                print(json.dumps(response.json(), indent=2))
                await _print_table(conn)
                await _print_runs(conn, [plain.run_id, split.run_id])
                if not real_send:
                    _print_send_times(
                        send_stub,
                        {"plain": plain.message_ids, "split": split.message_ids},
                        settings.inbox_min_gap_s,
                    )
                    print(
                        f"\nsend stub: {len(send_stub.deliveries)} deliveries, "
                        f"{send_stub.duplicate_keys} repeated Idempotency-Keys"
                    )
                await _print_status(conn, settings, split.run_id)
                if console and settings.operator_token is not None:
                    await seed_console_data(conn, service.url, secret, send_stub)
                    await serve_until_stopped(
                        service.url, settings.operator_token.get_secret_value(), dsn
                    )
            finally:
                service.stop()
        finally:
            await conn.close()
            for stub in stub_servers:
                stub.stop()
    print(f"done in {time.monotonic() - started:.1f} s")
    return 0 if response.status_code == 200 else 1


def _settings(
    dsn: str,
    openrouter_url: str,
    send_url: str,
    openrouter_stub: OpenRouterStub,
    send_stub: SendStub,
    real_openrouter: bool,
    real_send: bool,
    console: bool = False,
) -> Settings:
    values: dict[str, Any] = {
        "database_url": dsn,
        "cron_secret": secrets.token_urlsafe(24),
        "openrouter_base_url": openrouter_url,
        "openrouter_api_key": openrouter_stub.api_key,
        "send_url": send_url + SEND_PATH,
        "supabase_service_role_key": send_stub.service_role_key,
        "log_level": "WARNING",
        "inbox_min_gap_s": DEMO_MIN_GAP_S,
        "inbox_max_gap_s": DEMO_MAX_GAP_S,
        "inbox_daily_cap": 0,
    }
    if console:
        values["operator_token"] = secrets.token_urlsafe(24)
    if real_openrouter:
        values["openrouter_api_key"] = os.environ["OPENROUTER_API_KEY"]
        values["openrouter_base_url"] = os.environ.get(
            "OPENROUTER_BASE_URL", "https://openrouter.ai/api/v1"
        )
        values["default_model"] = os.environ.get("DEFAULT_MODEL", "openai/gpt-4o-mini")
    if real_send:
        values["send_url"] = os.environ["SEND_URL"]
        values["supabase_service_role_key"] = os.environ["SUPABASE_SERVICE_ROLE_KEY"]
        for name in ("inbox_min_gap_s", "inbox_max_gap_s", "inbox_daily_cap"):
            values.pop(name)  # a real number keeps the service's pace
            if os.environ.get(name.upper()):
                values[name] = os.environ[name.upper()]
    return Settings.model_validate(values)


async def _print_status(conn: asyncpg.Connection, settings: Settings, run_id: uuid.UUID) -> None:
    """What `python -m app status --run-id` shows for one of the demo's runs now."""
    pacing = Pacing.from_settings(settings)
    args = {"p_run_id": run_id, **pacing.args(), "p_inbox_timezone": pacing.timezone}
    placeholders = ", ".join(f"{name} => ${i}" for i, name in enumerate(args, start=1))
    status = await conn.fetchval(f"select campaign_queue_status({placeholders})", *args.values())
    print(f"\n$ python -m app status --run-id {run_id}\n" + render(status, run_id))


async def _print_table(conn: asyncpg.Connection) -> None:
    rows = await conn.fetch(
        """select l.client_name, l.company, m.status, m.parts_sent,
                  coalesce(jsonb_array_length(m.message_parts), 0) as parts,
                  m.message_parts ->> 0 as first_part, c.split_messages
           from campaign_messages m
           join leads l on l.id = m.lead_id
           join campaign_runs r on r.id = m.run_id
           join campaign_configs c on c.id = r.config_id
           order by c.split_messages, m.scheduled_at"""
    )
    print(f"\n{'lead':<14} {'company':<20} {'split':<5} {'status':<8} {'parts':<5} first part")
    for row in rows:
        preview = (row["first_part"] or "").replace("\n", " ")
        preview = preview if len(preview) <= 48 else preview[:47] + "…"
        print(
            f"{(row['client_name'] or '')[:14]:<14} {(row['company'] or '')[:20]:<20} "
            f"{'yes' if row['split_messages'] else 'no':<5} {row['status']:<8} "
            f"{row['parts_sent']}/{row['parts']:<3} {preview}"
        )


async def _print_runs(conn: asyncpg.Connection, run_ids: list[Any]) -> None:
    rows = await conn.fetch(
        """select id, status, leads_total, leads_processed, leads_failed, metrics
           from campaign_runs where id = any($1::uuid[]) order by id""",
        run_ids,
    )
    print()
    for row in rows:
        metrics = row["metrics"] or {}
        print(
            f"run {str(row['id'])[:8]}: {row['status']}, {row['leads_processed']}/"
            f"{row['leads_total']} sent, {row['leads_failed']} failed, "
            f"{metrics.get('parts_sent', 0)} parts, {metrics.get('ai_tokens_used', 0)} tokens"
        )


def _print_send_times(
    send_stub: SendStub, inboxes: dict[str, list[uuid.UUID]], min_gap_s: float
) -> None:
    """When each message's first part reached the send stub, per inbox: the pacing at work."""
    inbox_of = {str(m): name for name, ids in inboxes.items() for m in ids}
    times: dict[str, list[float]] = {name: [] for name in inboxes}
    for delivery in send_stub.deliveries:
        message_id, _, index = delivery["idempotency_key"].rpartition(":")
        if index == "0" and message_id in inbox_of:
            times[inbox_of[message_id]].append(float(delivery["at"]))
    if not any(times.values()):
        return
    start = min(t for column in times.values() for t in column)
    columns = {name: sorted(t - start for t in column) for name, column in times.items()}
    print(
        "\nfirst part of each message at the send endpoint, seconds after the first send "
        f"(gap: since the inbox's previous first part; at least {min_gap_s:g} s)"
    )
    print("  #" + "".join(f"{'inbox ' + name:>14} {'gap':>6}" for name in columns))
    for row in range(max(len(column) for column in columns.values())):
        cells = []
        for column in columns.values():
            if row >= len(column):
                cells.append(" " * 21)
                continue
            gap = f"{column[row] - column[row - 1]:6.2f}" if row else " " * 6
            cells.append(f"{column[row]:14.2f} {gap}")
        print((f"{row + 1:>3}" + "".join(cells)).rstrip())
    smallest = []
    for name, column in columns.items():
        gaps = [b - a for a, b in pairwise(column)]
        smallest.append(f"inbox {name} " + (f"{min(gaps):.2f} s" if gaps else "-"))
    print("smallest gap: " + ", ".join(smallest))
