"""Odd values in rows the product writes are read leniently: the message is sent.

Parsing does not depend on the store, so these run with the asyncpg store only (the store
fixture is narrowed below); test_bad_rows.py runs the failure paths with both stores.
"""

from __future__ import annotations

from collections import Counter

import asyncpg
import pytest

from app.sandbox.seed import seed_campaign
from tests.processing.invariants import assert_ended_runs_completed
from tests.processing.test_bad_rows import loosen_schema, statuses
from tests.service import Service


@pytest.fixture
def store_kind() -> str:
    return "postgres"


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
