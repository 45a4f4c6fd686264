"""One bad row never fails the call, and a database error after a claim strands nothing.

Production rows are written by other parts of the product, with fewer constraints than our
local schema: the tests drop those constraints to write what production may hold.
"""

from __future__ import annotations

from collections import Counter
from datetime import time

import asyncpg
import pytest

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


ODD_CONFIGS = {
    "end_time 24:00": "update campaign_configs set start_time = '00:00', end_time = '24:00'",
    "null timezone": "update campaign_configs set timezone = null",
    "null split_messages": "update campaign_configs set split_messages = null",
    "null max_split_parts": "update campaign_configs set max_split_parts = null",
    "max_split_parts 99": "update campaign_configs set split_messages = true, max_split_parts = 99",
}

ODD_LEADS = {
    "null inside tags": "update leads set tags = array['vip', null, 'b']",
    "custom_fields array": """update leads set custom_fields = '[1, "two"]'""",
    "custom_fields null": "update leads set custom_fields = null",
    "NaN deal_value": "update leads set deal_value = 'NaN'",
    "Infinity deal_value": "update leads set deal_value = 'Infinity'",
}


@pytest.mark.parametrize("odd", sorted(ODD_CONFIGS))
async def test_an_odd_config_value_is_read_leniently(
    service: Service, conn: asyncpg.Connection, odd: str
) -> None:
    await loosen_schema(conn)
    await seed_campaign(conn, leads=3, min_chars_to_split=50)
    await conn.execute(ODD_CONFIGS[odd])

    response = await service.process()

    assert response.status_code == 200, response.text
    assert response.json()["processed"] == 3
    assert await statuses(conn) == Counter({"sent": 3})
    await assert_ended_runs_completed(conn)


@pytest.mark.parametrize("odd", sorted(ODD_LEADS))
async def test_an_odd_lead_value_is_read_leniently(
    service: Service, conn: asyncpg.Connection, odd: str
) -> None:
    await loosen_schema(conn)
    seeded = await seed_campaign(conn, leads=3)
    await conn.execute(ODD_LEADS[odd] + " where id = $1", seeded.lead_ids[0])

    response = await service.process()

    assert response.status_code == 200, response.text
    assert response.json()["processed"] == 3
    assert await statuses(conn) == Counter({"sent": 3})


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
        """create or replace function get_lead_contexts(p_lead_ids uuid[]) returns jsonb
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
        """create or replace function get_lead_contexts(p_lead_ids uuid[]) returns jsonb
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
