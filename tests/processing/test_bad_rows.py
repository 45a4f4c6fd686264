"""One bad row never fails the call, and a database error after a claim strands nothing.

Production rows are written by other parts of the product, with fewer constraints than our
local schema: the tests drop those constraints to write what production may hold.
"""

from __future__ import annotations

from collections import Counter
from datetime import time

import asyncpg

from app.sandbox.seed import seed_campaign
from tests.processing.invariants import assert_ended_runs_completed, assert_no_lease_left
from tests.service import Service
from tests.sql.helpers import message_row, run_row


async def statuses(conn: asyncpg.Connection) -> Counter[str]:
    rows = await conn.fetch("select status from campaign_messages")
    return Counter(r["status"] for r in rows)


async def loosen_schema(conn: asyncpg.Connection) -> None:
    await conn.execute(
        """alter table campaign_configs alter column timezone drop not null,
                                        alter column split_messages drop not null,
                                        alter column max_split_parts drop not null,
                                        alter column inbox_id drop not null;
           alter table campaign_configs
             drop constraint if exists campaign_configs_max_split_parts_check;
           alter table leads alter column custom_fields drop not null"""
    )


async def test_a_row_that_cannot_be_worked_fails_alone(
    service: Service, conn: asyncpg.Connection
) -> None:
    await loosen_schema(conn)
    broken = await seed_campaign(conn, leads=2)
    fine = await seed_campaign(conn, leads=3)
    await conn.execute(
        "update campaign_configs set inbox_id = null where id = $1", broken.config_id
    )

    response = await service.process({"batch_size": 5})

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["claimed"], body["processed"], body["failed"]) == (5, 3, 2)
    for message_id in broken.message_ids:
        row = await message_row(conn, message_id)
        assert row["status"] == "failed"
        assert "inbox_id" in row["error_message"]
    for message_id in fine.message_ids:
        assert (await message_row(conn, message_id))["status"] == "sent"
    await assert_no_lease_left(conn)
    await assert_ended_runs_completed(conn)


async def _break_lead_contexts(conn: asyncpg.Connection) -> None:
    await conn.execute(
        """create or replace function get_lead_contexts(
             p_lead_ids uuid[], p_message_ids uuid[] default null,
             p_reply_stop_days int default 30) returns jsonb
           language plpgsql security definer set search_path = public as $$
           begin raise exception 'lead contexts are down'; end $$"""
    )


async def test_a_database_error_after_the_claim_releases_the_batch(
    service: Service, conn: asyncpg.Connection
) -> None:
    seeded = await seed_campaign(conn, leads=4)
    await _break_lead_contexts(conn)

    response = await service.process({"batch_size": 4})

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["claimed"], body["released"], body["processed"], body["failed"]) == (4, 4, 0, 0)
    for message_id in seeded.message_ids:
        row = await message_row(conn, message_id)
        assert (row["status"], row["retry_count"], row["lock_token"]) == ("pending", 0, None)
    assert (await run_row(conn, seeded.run_id))["status"] == "running"


async def test_a_database_error_before_any_claim_is_503(
    service: Service, conn: asyncpg.Connection
) -> None:
    await seed_campaign(conn, leads=2)
    await conn.execute("alter function get_and_lock_campaign_messages rename to claim_gone")

    response = await service.process()

    assert response.status_code == 503
    assert response.json()["success"] is False
    assert await statuses(conn) == Counter({"pending": 2})


async def test_a_lead_context_that_cannot_be_read_fails_that_message_alone(
    service: Service, conn: asyncpg.Connection
) -> None:
    seeded = await seed_campaign(conn, leads=3)
    bad = seeded.lead_ids[1]
    await conn.execute(
        """create or replace function get_lead_contexts(
             p_lead_ids uuid[], p_message_ids uuid[] default null,
             p_reply_stop_days int default 30) returns jsonb
           language sql security definer set search_path = public as $$
             select jsonb_object_agg(l.id::text,
                      case when l.id = $1 then jsonb_build_object('id', 'not-a-uuid')
                           else jsonb_build_object('id', l.id, 'client_name', l.client_name) end)
               from leads l where l.id = any(p_lead_ids) $$""".replace("$1", f"'{bad}'::uuid")
    )

    body = (await service.process()).json()

    assert (body["processed"], body["failed"]) == (2, 1)
    row = await message_row(conn, seeded.message_ids[1])
    assert row["status"] == "failed"
    assert "lead context unreadable" in row["error_message"]
    await assert_no_lease_left(conn)


async def test_the_window_end_24_00_means_midnight(
    service: Service, conn: asyncpg.Connection
) -> None:
    await seed_campaign(conn, leads=1, start_time=time(0, 0), timezone="UTC")
    await conn.execute("update campaign_configs set end_time = '24:00'")
    assert (await service.process()).json()["processed"] == 1


async def test_data_the_database_cannot_store_fails_the_message_at_once(
    service: Service, conn: asyncpg.Connection
) -> None:
    # Stands in for any data error the database raises on a write (here: a product trigger
    # refusing the text with SQLSTATE 22P05, untranslatable character).
    await conn.execute(
        """create function refuse_text() returns trigger language plpgsql as $$
           begin
             if new.generated_message is not null then
               raise exception 'cannot store this text' using errcode = '22P05';
             end if;
             return new;
           end $$;
           create trigger refuse_text before update on campaign_messages
             for each row execute function refuse_text()"""
    )
    seeded = await seed_campaign(conn, leads=2)

    body = (await service.process()).json()

    assert (body["processed"], body["failed"], body["retried"]) == (0, 2, 0)
    for message_id in seeded.message_ids:
        row = await message_row(conn, message_id)
        assert (row["status"], row["retry_count"]) == ("failed", 0)
        assert "22P05" in row["error_message"]
    await assert_no_lease_left(conn)
    await assert_ended_runs_completed(conn)
