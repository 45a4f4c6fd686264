"""The repetition guard end to end (README, "Number health"): real HTTP, real Postgres, both
stores, the OpenRouter stub scripted to answer one text for every lead of an inbox."""

from __future__ import annotations

from datetime import timedelta

import asyncpg

from app.ai.prompts import VARY_INSTRUCTION
from app.ai.repetition import text_hash
from app.sandbox.seed import seed_campaign
from tests.processing.invariants import assert_no_lease_left
from tests.service import Service
from tests.sql.helpers import message_row

# The same text for two leads but for their names and a figure: the same text to WhatsApp.
SAME = "Oi! Temos 3 vagas para uma demonstração esta semana. Quer uma delas?"


async def test_a_repeat_is_written_again_told_to_vary_and_sent(
    service: Service, conn: asyncpg.Connection
) -> None:
    seeded = await seed_campaign(conn, leads=2, spacing=timedelta(seconds=1))
    service.stubs.openrouter.answer_text = SAME

    first = await service.process({"max_messages": 1})
    second = await service.process({"max_messages": 1})

    assert (first.json()["processed"], second.json()["processed"]) == (1, 1)
    prompts = service.stubs.openrouter.prompts
    assert [VARY_INSTRUCTION in p for p in prompts] == [False, False, True]
    texts = [d["text"] for d in service.stubs.send.deliveries]
    assert len(texts) == 2
    assert texts[0] == SAME
    assert texts[1] != SAME
    rows = [await message_row(conn, m) for m in seeded.message_ids]
    assert [r["status"] for r in rows] == ["sent", "sent"]
    assert rows[0]["text_hash"] != rows[1]["text_hash"]
    assert rows[1]["generated_message"] == texts[1]
    assert rows[1]["retry_count"] == 0
    await assert_no_lease_left(conn)


async def test_a_text_that_keeps_repeating_is_retried_later(
    service: Service, conn: asyncpg.Connection
) -> None:
    seeded = await seed_campaign(conn, leads=2, spacing=timedelta(seconds=1))
    service.stubs.openrouter.answer_text = SAME
    service.stubs.openrouter.ignores_vary = True

    await service.process({"max_messages": 1})
    answer = (await service.process({"max_messages": 1})).json()

    assert (answer["processed"], answer["failed"]) == (0, 1)
    assert [VARY_INSTRUCTION in p for p in service.stubs.openrouter.prompts] == [
        False,
        False,
        True,
    ]
    assert [d["text"] for d in service.stubs.send.deliveries] == [SAME]
    held = await message_row(conn, seeded.message_ids[1])
    assert (held["status"], held["retry_count"], held["error_message"]) == (
        "pending",
        1,
        "repeated text",
    )
    assert held["generated_message"] is None  # written anew at the retry
    delay = await conn.fetchval(
        "select extract(epoch from scheduled_at - updated_at) from campaign_messages where id = $1",
        seeded.message_ids[1],
    )
    assert 4.5 * 60 < float(delay) <= 5 * 60  # the first retry's +5 minutes
    await assert_no_lease_left(conn)


async def test_one_call_writing_the_same_text_for_two_leads_at_once_sends_it_once(
    service: Service, conn: asyncpg.Connection
) -> None:
    """Both messages in one call, generated concurrently: whichever way they interleave (both
    saved before either slot, or one sent before the other's save), the text goes out once."""
    seeded = await seed_campaign(conn, leads=2)
    service.stubs.openrouter.answer_text = SAME
    service.stubs.openrouter.ignores_vary = True

    answer = (await service.process()).json()

    assert (answer["claimed"], answer["processed"], answer["failed"]) == (2, 1, 1)
    assert [d["text"] for d in service.stubs.send.deliveries] == [SAME]
    rows = sorted(
        [await message_row(conn, m) for m in seeded.message_ids], key=lambda r: r["status"]
    )
    assert [(r["status"], r["retry_count"], r["error_message"]) for r in rows] == [
        ("pending", 1, "repeated text"),
        ("sent", 0, None),
    ]
    await assert_no_lease_left(conn)


async def test_a_saved_text_held_back_past_its_claim_is_written_again_when_taken(
    service: Service, conn: asyncpg.Connection
) -> None:
    """A text saved by an earlier attempt and held back (say, by the daily cap) while another
    message of the inbox took the same text: the attempt writes it again, told to vary."""
    seeded = await seed_campaign(conn, leads=2)
    lead = await conn.fetchrow(
        "select client_name, company from leads where id = $1", seeded.lead_ids[1]
    )
    held_hash = text_hash(SAME, name=lead["client_name"], company=lead["company"])
    await conn.execute(
        """update campaign_messages set generated_message = $2, message_parts = $3,
                  text_hash = $4 where id = $1""",
        seeded.message_ids[1],
        SAME,
        [SAME],
        held_hash,
    )
    await conn.execute(
        """insert into campaign_inbox_sent_texts (inbox_id, text_hash, message_id, sent_at)
           values ($1, $2, $3, now() - interval '1 hour')""",
        seeded.inbox_id,
        held_hash,
        seeded.message_ids[0],
    )
    await conn.execute("delete from campaign_messages where id = $1", seeded.message_ids[0])

    answer = (await service.process()).json()

    assert answer["processed"] == 1
    [prompt] = service.stubs.openrouter.prompts
    assert VARY_INSTRUCTION in prompt
    [delivery] = service.stubs.send.deliveries
    assert delivery["text"] != SAME
    row = await message_row(conn, seeded.message_ids[1])
    assert (row["status"], row["generated_message"]) == ("sent", delivery["text"])
    assert row["text_hash"] != held_hash
