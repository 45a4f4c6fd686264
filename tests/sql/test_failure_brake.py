"""The failure brake's record and trigger, on real Postgres: each inbox's last 20 sends,
INBOX_BRAKE_FAILURES of them failed for good at the send endpoint (400/404) brake it, and
lift_inbox_brake lifts it."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from app.sandbox.seed import SeededCampaign, seed_campaign
from app.store.postgres import PostgresRpc
from tests.sql.helpers import claim, message_row
from tests.sql.messages import fence, save
from tests.sql.waiting import connection, wait_until_blocked

DELIVERED = 200
SEND_ERROR = "send: HTTP {}"


class Inbox:
    """An inbox with `count` claimed messages, each sent once: delivered or failed."""

    def __init__(self, rpc: PostgresRpc, seeded: SeededCampaign, items: list[dict[str, Any]]):
        self.rpc, self.seeded, self.items = rpc, seeded, items

    @classmethod
    async def with_messages(cls, conn: asyncpg.Connection, rpc: PostgresRpc, count: int) -> Inbox:
        seeded = await seed_campaign(conn, leads=count)
        items = await claim(rpc, count)
        assert len(items) == count
        return cls(rpc, seeded, items)

    async def send(self, status: int, **extra: Any) -> Any:
        """The next message's send: its first part delivered (200), or failed with `status`
        at the send endpoint, as the service fails it (a 400/404 is a failure for good)."""
        item = self.items.pop(0)
        if status == DELIVERED:
            return await deliver_first_part(self.rpc, item)
        return await fail_at_send(self.rpc, item, status, **extra)

    async def sends(self, *statuses: int) -> list[Any]:
        return [await self.send(status) for status in statuses]


async def deliver_first_part(rpc: PostgresRpc, item: dict[str, Any]) -> Any:
    assert (await rpc.call("start_campaign_message", fence(item)))["ok"] is True
    assert (await save(rpc, item))["ok"] is True
    return await rpc.call(
        "mark_message_part_sent",
        {**fence(item), "p_part_index": 0, "p_provider_message_id": "wamid.0"},
    )


async def fail_at_send(rpc: PostgresRpc, item: dict[str, Any], status: int, **extra: Any) -> Any:
    args = {
        **fence(item),
        "p_error": SEND_ERROR.format(status),
        "p_retryable": status not in (400, 404),
        "p_send_status": status,
        **extra,
    }
    return await rpc.call("fail_campaign_message", args)


async def record(conn: asyncpg.Connection, inbox_id: uuid.UUID) -> list[int]:
    statuses = await conn.fetchval(
        "select statuses from campaign_inbox_send_outcomes where inbox_id = $1", inbox_id
    )
    return list(statuses or [])


async def brake(conn: asyncpg.Connection, inbox_id: uuid.UUID) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        """select brake_until, brake_reason, brake_until > now() as braked,
                  brake_until - now() as left
             from campaign_inbox_pacing_state where inbox_id = $1""",
        inbox_id,
    )
    return dict(row) if row else None


async def is_braked(conn: asyncpg.Connection, inbox_id: uuid.UUID) -> bool:
    state = await brake(conn, inbox_id)
    return bool(state and state["braked"])


async def test_five_invalid_numbers_brake_the_inbox_for_six_hours(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    inbox = await Inbox.with_messages(conn, rpc, 5)
    answers = await inbox.sends(404, 400, 404, 400)
    assert all(a["brake"] is None for a in answers)
    assert not await is_braked(conn, inbox.seeded.inbox_id)

    fifth = await inbox.send(404)

    assert fifth["status"] == "failed"
    assert fifth["brake"]["inbox_id"] == str(inbox.seeded.inbox_id)
    state = await brake(conn, inbox.seeded.inbox_id)
    assert state is not None
    assert state["braked"]
    assert timedelta(hours=5, minutes=59) < state["left"] <= timedelta(hours=6)
    assert state["brake_reason"] == (
        "5 of the last 5 sends failed for good at the send endpoint (invalid or unknown "
        "numbers); last error: send: HTTP 404"
    )
    # The sends that tripped it start the record over: its end does not re-trip at once.
    assert await record(conn, inbox.seeded.inbox_id) == []


async def test_only_the_last_20_sends_count(conn: asyncpg.Connection, rpc: PostgresRpc) -> None:
    inbox = await Inbox.with_messages(conn, rpc, 25)
    await inbox.sends(404, 404, 404, 404, *[DELIVERED] * 16)
    assert (await record(conn, inbox.seeded.inbox_id)).count(404) == 4

    # Each new failure pushes an old one out of the window: 4 of the last 20, never 5.
    for _ in range(4):
        assert (await inbox.send(404))["brake"] is None
        statuses = await record(conn, inbox.seeded.inbox_id)
        assert len(statuses) == 20
        assert statuses.count(404) == 4
    assert not await is_braked(conn, inbox.seeded.inbox_id)

    assert (await inbox.send(400))["brake"] is not None  # 5 of the last 20: the new ones
    state = await brake(conn, inbox.seeded.inbox_id)
    assert state is not None
    assert state["brake_reason"].startswith("5 of the last 20 sends failed for good")


async def test_a_success_between_failures_does_not_reset_the_count(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    inbox = await Inbox.with_messages(conn, rpc, 8)
    answers = await inbox.sends(404, DELIVERED, 400, DELIVERED, 404, DELIVERED, 404)
    assert not await is_braked(conn, inbox.seeded.inbox_id)
    assert all(a.get("brake") is None for a in answers)

    assert (await inbox.send(400))["brake"] is not None
    state = await brake(conn, inbox.seeded.inbox_id)
    assert state is not None
    assert state["brake_reason"].startswith("5 of the last 8 sends failed for good")


async def test_a_model_failure_or_a_retryable_send_failure_is_not_counted(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    inbox = await Inbox.with_messages(conn, rpc, 8)
    await inbox.sends(404, 404, 404, 404)
    # The model answered 400 (no p_send_status: not a send), and the send endpoint 500 and 429.
    model = inbox.items.pop(0)
    answer = await rpc.call(
        "fail_campaign_message",
        {**fence(model), "p_error": "openrouter: HTTP 400", "p_retryable": False},
    )
    assert answer["status"] == "failed"
    assert answer["brake"] is None
    await inbox.sends(500, 429)

    assert await record(conn, inbox.seeded.inbox_id) == [404, 404, 404, 404, 500, 429]
    assert not await is_braked(conn, inbox.seeded.inbox_id)
    assert (await inbox.send(404))["brake"] is not None


async def test_a_message_whose_first_part_went_out_is_one_send(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    inbox = await Inbox.with_messages(conn, rpc, 1)
    item = inbox.items[0]
    await deliver_first_part(rpc, item)
    answer = await fail_at_send(rpc, item, 400)  # its second part refused: the number is valid

    assert answer["status"] == "failed"
    assert answer["brake"] is None
    assert await record(conn, inbox.seeded.inbox_id) == [DELIVERED]


async def test_zero_failures_turns_the_brake_off(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    inbox = await Inbox.with_messages(conn, rpc, 6)
    for _ in range(6):
        answer = await inbox.send(404, p_brake_failures=0)
        assert answer["brake"] is None
    assert not await is_braked(conn, inbox.seeded.inbox_id)
    assert await record(conn, inbox.seeded.inbox_id) == [404] * 6


async def test_the_settings_decide_how_many_failures_and_how_long(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    inbox = await Inbox.with_messages(conn, rpc, 2)
    settings = {"p_brake_failures": 2, "p_brake_hours": 0.5}
    assert (await inbox.send(400, **settings))["brake"] is None
    assert (await inbox.send(400, **settings))["brake"] is not None
    state = await brake(conn, inbox.seeded.inbox_id)
    assert state is not None
    assert timedelta(minutes=29) < state["left"] <= timedelta(minutes=30)


async def test_a_braked_inbox_keeps_its_brake_end(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    inbox = await Inbox.with_messages(conn, rpc, 10)
    await inbox.sends(404, 404, 404, 404, 404)
    first = await brake(conn, inbox.seeded.inbox_id)
    assert first is not None
    assert first["braked"]
    # Sends already under way when it tripped fail too: the brake is not pushed further.
    answers = await inbox.sends(404, 404, 404, 404, 404)
    assert all(a["brake"] is None for a in answers)
    later = await brake(conn, inbox.seeded.inbox_id)
    assert later is not None
    assert later["brake_until"] == first["brake_until"]


async def test_the_reason_names_no_phone_number_and_no_id(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    inbox = await Inbox.with_messages(conn, rpc, 2)
    error = f"send: HTTP 404 for +55 11 98765-4321 (conversation {uuid.uuid4()})"
    settings = {"p_brake_failures": 2, "p_error": error}
    await inbox.send(404, **settings)
    await inbox.send(404, **settings)
    state = await brake(conn, inbox.seeded.inbox_id)
    assert state is not None
    assert state["brake_reason"].endswith(
        "last error: send: HTTP 404 for <number> (conversation <id>)"
    )
    assert "98765" not in state["brake_reason"]


async def test_two_connections_sending_on_one_inbox_lose_no_outcome(
    conn: asyncpg.Connection, rpc: PostgresRpc, db_dsn: str
) -> None:
    inbox = await Inbox.with_messages(conn, rpc, 18)
    second = inbox.items[1]
    await inbox.sends(DELIVERED)  # the record row exists: both contend for it below
    inbox.items.remove(second)
    async with connection(db_dsn) as a, connection(db_dsn) as b:
        tx = a.transaction()
        await tx.start()
        await a.fetchval(
            "select fail_campaign_message($1, $2, 'send: HTTP 404', false, 404)",
            second["id"],
            second["lock_token"],
        )
        third = inbox.items.pop(0)
        waiting = asyncio.ensure_future(
            b.fetchval(
                "select fail_campaign_message($1, $2, 'send: HTTP 400', false, 400)",
                third["id"],
                third["lock_token"],
            )
        )
        await wait_until_blocked(conn, b.get_server_pid())
        await tx.commit()
        await waiting
    assert await record(conn, inbox.seeded.inbox_id) == [DELIVERED, 404, 400]

    # And many at once, on two connections: every outcome is there.
    left = list(inbox.items)

    async def send_all(dsn: str, items: list[dict[str, Any]], status: int) -> None:
        async with connection(dsn) as c:
            for item in items:
                await c.fetchval(
                    "select fail_campaign_message($1, $2, 'send: HTTP 500', true, $3)",
                    item["id"],
                    item["lock_token"],
                    status,
                )

    await asyncio.gather(send_all(db_dsn, left[0::2], 500), send_all(db_dsn, left[1::2], 503))
    statuses = await record(conn, inbox.seeded.inbox_id)
    assert len(statuses) == 3 + len(left)
    assert statuses.count(500) == len(left[0::2])
    assert statuses.count(503) == len(left[1::2])


async def test_lifting_the_brake_clears_it_and_the_record(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    inbox = await Inbox.with_messages(conn, rpc, 7)
    await inbox.sends(404, 404, 404, 404, 404)
    assert await is_braked(conn, inbox.seeded.inbox_id)
    await inbox.send(404)  # a send under way when it tripped: in the record again

    lifted = await rpc.call("lift_inbox_brake", {"p_inbox_id": inbox.seeded.inbox_id})

    assert lifted["ok"] is True
    assert lifted["was_braked"] is True
    assert lifted["brake_reason"].startswith("5 of the last 5 sends")
    state = await brake(conn, inbox.seeded.inbox_id)
    assert state is not None
    # Ended now, not forgotten: the backlog it held is not late for the skip horizon.
    assert state["brake_until"] is not None
    assert not await is_braked(conn, inbox.seeded.inbox_id)
    assert state["brake_reason"] is None
    assert await record(conn, inbox.seeded.inbox_id) == []
    assert (await inbox.send(404))["brake"] is None  # no re-trip at the next failure
    again = await rpc.call("lift_inbox_brake", {"p_inbox_id": inbox.seeded.inbox_id})
    assert again["ok"] is True
    assert again["was_braked"] is False


async def test_lifting_an_unknown_inbox_is_a_clear_error(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    unknown = uuid.uuid4()
    with pytest.raises(asyncpg.NoDataFoundError, match=f"inbox {unknown} has no pacing state"):
        await conn.fetchval("select lift_inbox_brake($1)", unknown)
    with pytest.raises(asyncpg.NullValueNotAllowedError, match="p_inbox_id is required"):
        await conn.fetchval("select lift_inbox_brake(null)")
    assert await conn.fetchval("select count(*) from campaign_inbox_pacing_state") == 0


async def test_a_failure_keeps_its_retry_schedule_and_run_counts(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    inbox = await Inbox.with_messages(conn, rpc, 1)
    item = inbox.items[0]
    answer = await inbox.send(503)
    assert answer["status"] == "pending"
    assert answer["retry_count"] == 1
    row = await message_row(conn, item["id"])
    assert row["status"] == "pending"
    assert row["error_message"] == "send: HTTP 503"
