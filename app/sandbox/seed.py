"""Demo data shared by the demo, the tests and the benchmarks: one campaign run per call."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, time, timedelta

import asyncpg

_COMPANIES = ["Acme Ltda", "Padaria Pão Quente", "Żółw & Co", "北京贸易", "Café Ñandú", "Nordic AB"]
_FIRST_NAMES = ["Ana", "Bruno", "Carla", "Diego", "Élodie", "Fátima", "Gustavo", "Hana", "Ícaro"]


@dataclass(frozen=True)
class SeededCampaign:
    workspace_id: uuid.UUID
    inbox_id: uuid.UUID
    config_id: uuid.UUID
    run_id: uuid.UUID
    source_column_id: uuid.UUID
    target_column_id: uuid.UUID
    lead_ids: list[uuid.UUID]
    message_ids: list[uuid.UUID]


async def seed_campaign(
    conn: asyncpg.Connection,
    *,
    leads: int = 10,
    workspace_id: uuid.UUID | None = None,
    inbox_status: str = "connected",
    run_status: str = "running",
    split_messages: bool = False,
    max_split_parts: int = 3,
    ai_instructions: str = "You are a friendly sales rep. Write one short WhatsApp message.",
    model: str | None = None,
    min_chars_to_split: int = 150,
    delay_between_messages_ms: int = 0,
    start_time: time | None = None,
    end_time: time | None = None,
    timezone: str = "America/Sao_Paulo",
    first_scheduled_at: datetime | None = None,
    spacing: timedelta = timedelta(0),
    inbox_id: uuid.UUID | None = None,
) -> SeededCampaign:
    """Creates an inbox, a campaign config, a run and `leads` leads each with one message.

    Messages are due from `first_scheduled_at` (default: one minute ago), `spacing` apart.
    Phone numbers are fictional (+55 11 9xxxx-xxxx, sequential).
    With `inbox_id` the campaign uses that existing inbox (in its workspace, unless
    `workspace_id` says otherwise) instead of creating one; `inbox_status` is then unused.
    """
    source_column_id, target_column_id = uuid.uuid4(), uuid.uuid4()
    async with conn.transaction():
        if inbox_id is None:
            workspace_id = workspace_id or uuid.uuid4()
            inbox_id = await conn.fetchval(
                "insert into inboxes (workspace_id, name, status) values ($1, $2, $3) returning id",
                workspace_id,
                f"WhatsApp {str(workspace_id)[:4]}",
                inbox_status,
            )
        elif workspace_id is None:
            workspace_id = await conn.fetchval(
                "select workspace_id from inboxes where id = $1", inbox_id
            )
            if workspace_id is None:
                raise ValueError(f"no inbox {inbox_id}")
        if model is not None:
            await conn.execute(
                "insert into ai_agents (workspace_id, model) values ($1, $2)", workspace_id, model
            )
        if not await conn.fetchval(
            "select exists (select 1 from ai_message_splitter_config where workspace_id = $1)",
            workspace_id,
        ):
            await conn.execute(
                """insert into ai_message_splitter_config
                     (workspace_id, min_chars_to_split, delay_between_messages)
                   values ($1, $2, $3)""",
                workspace_id,
                min_chars_to_split,
                delay_between_messages_ms,
            )
        config_id = await conn.fetchval(
            """insert into campaign_configs
                 (workspace_id, inbox_id, source_column_id, target_column_id, ai_instructions,
                  split_messages, max_split_parts, start_time, end_time, timezone)
               values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) returning id""",
            workspace_id,
            inbox_id,
            source_column_id,
            target_column_id,
            ai_instructions,
            split_messages,
            max_split_parts,
            start_time,
            end_time,
            timezone,
        )
        run_id = await conn.fetchval(
            """insert into campaign_runs (config_id, status, leads_total)
               values ($1, $2, $3) returning id""",
            config_id,
            run_status,
            leads,
        )
        lead_rows = await conn.fetch(
            """insert into leads (workspace_id, column_id, client_name, company, phone,
                                  deal_value, priority, tags, custom_fields)
               select $1, $2,
                      ($3::text[])[1 + (g % cardinality($3::text[]))] || ' ' || g,
                      ($4::text[])[1 + (g % cardinality($4::text[]))],
                      '+55119' || lpad(g::text, 8, '0'),
                      (g * 137) % 50000,
                      (array['low', 'medium', 'high'])[1 + g % 3],
                      array['demo', 'batch-' || (g % 4)],
                      jsonb_build_object('city', 'São Paulo', 'lead_number', g)
               from generate_series(1, $5) g
               order by g
               returning id, phone""",
            workspace_id,
            source_column_id,
            _FIRST_NAMES,
            _COMPANIES,
            leads,
        )
        first = first_scheduled_at or (datetime.now().astimezone() - timedelta(minutes=1))
        message_rows = await conn.fetch(
            """insert into campaign_messages
                 (run_id, lead_id, phone_number, phone_normalized, scheduled_at)
               select $1, l.id, l.phone, regexp_replace(l.phone, '\\D', '', 'g'),
                      $4::timestamptz + $5::interval * (l.n - 1)
               from unnest($2::uuid[], $3::text[]) with ordinality as l(id, phone, n)
               order by l.n
               returning id""",
            run_id,
            [r["id"] for r in lead_rows],
            [r["phone"] for r in lead_rows],
            first,
            spacing,
        )
    return SeededCampaign(
        workspace_id=workspace_id,
        inbox_id=inbox_id,
        config_id=config_id,
        run_id=run_id,
        source_column_id=source_column_id,
        target_column_id=target_column_id,
        lead_ids=[r["id"] for r in lead_rows],
        message_ids=[r["id"] for r in message_rows],
    )
