"""Lead-local hours end to end (README "Number health"): real HTTP, real Postgres, both
stores, the stubs. A campaign in São Paulo whose window is open now, with a lead in São Paulo
and leads in Tokyo (12 hours ahead, where the same hours are closed). Fictional numbers.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from app.sandbox.seed import SeededCampaign, seed_campaign
from tests.processing.invariants import assert_no_lease_left
from tests.service import Service
from tests.sql.helpers import message_row
from tests.stubs import SettingsFactory

SAO_PAULO = ZoneInfo("America/Sao_Paulo")
TOKYO = ZoneInfo("Asia/Tokyo")


@pytest.fixture(params=[True, False], ids=["lead-local", "campaign-zone"])
def lead_local(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
def make_settings(make_settings: SettingsFactory, lead_local: bool) -> SettingsFactory:
    return lambda **overrides: make_settings(**{"lead_local_window": lead_local, **overrides})


def local_time(at: datetime) -> time:
    return at.astimezone(SAO_PAULO).time().replace(microsecond=0)


async def campaign(conn: asyncpg.Connection, tokyo_leads: int) -> tuple[SeededCampaign, datetime]:
    """Window [now - 1 h, now + 2 h) in São Paulo: open there, closed in Tokyo. The first lead
    is in São Paulo, the others in Tokyo. Returns the Tokyo leads' next opening."""
    now = datetime.now(UTC)
    start, end = local_time(now - timedelta(hours=1)), local_time(now + timedelta(hours=2))
    seeded = await seed_campaign(
        conn, leads=1 + tokyo_leads, start_time=start, end_time=end, timezone="America/Sao_Paulo"
    )
    tokyo_ids = seeded.message_ids[1:]
    await conn.execute(
        """update campaign_messages
              set phone_number = '+81 3 5555 ' || lpad((row_number)::text, 4, '0')
             from (select id, row_number() over (order by id) from campaign_messages
                    where id = any($1::uuid[])) n
            where campaign_messages.id = n.id""",
        tokyo_ids,
    )
    tokyo_today = now.astimezone(TOKYO).date()
    opening = min(
        o
        for o in (datetime.combine(tokyo_today + timedelta(days=d), start, TOKYO) for d in (0, 1))
        if o > now
    )
    return seeded, opening.astimezone(UTC)


async def test_a_lead_outside_its_own_window_is_held_back_while_one_inside_is_sent(
    service: Service, conn: asyncpg.Connection, lead_local: bool
) -> None:
    seeded, tokyo_opening = await campaign(conn, tokyo_leads=1)
    in_sao_paulo, in_tokyo = seeded.message_ids

    body = (await service.process()).json()

    assert (await message_row(conn, in_sao_paulo))["status"] == "sent"
    held = await message_row(conn, in_tokyo)
    if lead_local:
        assert (body["claimed"], body["processed"], body["paused"]) == (2, 1, 1), body
        assert (held["status"], held["retry_count"]) == ("pending", 0)
        assert held["scheduled_at"] == tokyo_opening
        assert held["lead_timezone"] == "Asia/Tokyo"
    else:  # both follow the campaign's zone, where the window is open
        assert (body["claimed"], body["processed"]) == (2, 2), body
        assert held["status"] == "sent"
    await assert_no_lease_left(conn)


async def test_a_backlog_outside_its_leads_window_is_claimed_once_not_every_poll(
    service: Service, conn: asyncpg.Connection, lead_local: bool
) -> None:
    seeded, tokyo_opening = await campaign(conn, tokyo_leads=40)

    first = (await service.process({"batch_size": 10})).json()
    polls = [(await service.process({"batch_size": 10})).json() for _ in range(3)]

    # Later polls claim nothing (0 claims a minute at a once-a-minute scheduler), and none is
    # skipped as late.
    assert [p["claimed"] for p in polls] == [0, 0, 0]
    assert sum(p["old_skipped"] for p in [first, *polls]) == 0
    rows = await conn.fetch(
        "select status, scheduled_at, retry_count from campaign_messages where id = any($1)",
        seeded.message_ids[1:],
    )
    if not lead_local:  # the campaign's zone: its window is open, all are sent
        assert (first["claimed"], first["processed"]) == (41, 41), first
        assert {r["status"] for r in rows} == {"sent"}
        return
    # The first call holds each Tokyo lead back to its opening, once.
    assert (first["claimed"], first["processed"], first["paused"]) == (41, 1, 40), first
    assert {(r["status"], r["scheduled_at"], r["retry_count"]) for r in rows} == {
        ("pending", tokyo_opening, 0)
    }
