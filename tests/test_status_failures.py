"""Failures an operator can see: a call whose answer nobody reads (a pg_cron caller gives up
after 5 s) leaves its mark in GET /status and `python -m app status`: the messages waiting
for a retry, the circuit's opening (answered 502 or not) and the time of the last call.

Real service over loopback, real database, the OpenRouter stub answering 5xx or 401.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from app.sandbox.seed import seed_campaign
from app.sandbox.stubs import Fault
from app.status_answer import StatusAnswer
from tests.service import Service
from tests.test_status import get_status, run_cli

WORKER = f"{socket.gethostname()}:{os.getpid()}"  # the in-process service's worker name


async def status_of(service: Service) -> dict[str, Any]:
    response = await get_status(service)
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def test_a_provider_down_shows_the_retries_and_the_circuit_opening(
    service: Service, conn: asyncpg.Connection
) -> None:
    seeded = await seed_campaign(conn, leads=8)
    service.stubs.openrouter.faults.ratios = {Fault.SERVER_ERROR: 1.0}

    response = await service.process({"concurrency": 1, "batch_size": 8})

    answer = response.json()
    assert response.status_code == 200
    assert (answer["failed"], answer["retried"], answer["released"]) == (5, 5, 3)
    assert answer["circuit_open"].startswith("5 outbound failures in a row")
    body = await status_of(service)
    StatusAnswer.model_validate(body)
    [retrying] = body["retrying"]
    assert retrying["count"] == 5
    assert "HTTP 500" in retrying["reason"]
    assert datetime.fromisoformat(retrying["next_attempt_at"]) > datetime.fromisoformat(body["at"])
    assert body["failures"] == []  # none failed for good
    [run] = body["runs"]
    assert (run["run_id"], run["failed"], run["retrying"]) == (str(seeded.run_id), 0, 5)
    [opening] = body["circuit"]["openings"]
    assert opening["reason"] == answer["circuit_open"]
    assert opening["answered_502"] is False
    assert datetime.fromisoformat(opening["opened_at"]) <= datetime.fromisoformat(body["at"])
    assert body["circuit"]["outage_since"] is not None
    last = body["last_call"]
    assert {k: last[k] for k in ("claimed", "processed", "failed", "retried", "circuit_open")} == {
        "claimed": 8,
        "processed": 0,
        "failed": 5,
        "retried": 5,
        "circuit_open": answer["circuit_open"],
    }


async def test_a_bad_key_answers_502_and_the_status_shows_the_opening_as_such(
    service: Service, conn: asyncpg.Connection
) -> None:
    await seed_campaign(conn, leads=3)
    service.stubs.openrouter.faults.ratios = {Fault.UNAUTHORIZED: 1.0}

    response = await service.process({"concurrency": 1})

    assert response.status_code == 502
    answer = response.json()
    assert (answer["failed"], answer["released"]) == (0, 3)
    body = await status_of(service)
    [opening] = body["circuit"]["openings"]
    assert (opening["reason"], opening["answered_502"]) == (answer["circuit_open"], True)
    assert "401" in opening["reason"]
    assert (body["last_call"]["answered_502"], body["last_call"]["claimed"]) == (True, 3)
    assert body["retrying"] == []  # released untouched: nothing spent on a bad key


@pytest.mark.parametrize("store_kind", ["postgres"])
async def test_a_call_that_claims_nothing_moves_the_last_call(
    service: Service, conn: asyncpg.Connection
) -> None:
    assert (await status_of(service))["last_call"] is None

    assert (await service.process()).json()["claimed"] == 0
    first = (await status_of(service))["last_call"]
    assert (await service.process()).json()["claimed"] == 0
    second = (await status_of(service))["last_call"]

    assert datetime.fromisoformat(second["at"]) > datetime.fromisoformat(first["at"])
    assert (second["claimed"], second["circuit_open"]) == (0, None)
    assert second["worker"] == first["worker"]


@pytest.mark.parametrize("store_kind", ["postgres"])
async def test_the_cli_prints_the_retries_the_circuit_and_the_last_call(
    service: Service, conn: asyncpg.Connection, db_dsn: str, tmp_path: Path
) -> None:
    await seed_campaign(conn, leads=5)
    service.stubs.openrouter.faults.ratios = {Fault.SERVER_ERROR: 1.0}
    assert (await service.process({"concurrency": 1})).json()["retried"] == 5
    service.stubs.openrouter.faults.ratios = {Fault.UNAUTHORIZED: 1.0}
    await conn.execute("update campaign_messages set scheduled_at = now() where retry_count > 0")
    assert (await service.process({"concurrency": 1})).status_code == 502

    code, out, err = await run_cli(["status"], {"DATABASE_URL": db_dsn}, tmp_path)

    assert code == 0, err
    lines = out.splitlines()
    section = lines.index("RETRYING: messages waiting for a retry (by reason)")
    assert lines[section + 1].split() == ["count", "next", "attempt", "reason"]
    assert lines[section + 2].split()[:2] == ["5", "now"]  # due again, waiting for a claim
    assert "HTTP 500" in lines[section + 2]
    assert "FAILED FOR GOOD, LAST 24 H\n  none" in out
    circuit = lines.index("CIRCUIT")
    assert lines[circuit + 1].startswith("  provider outage open since ")
    assert lines[circuit + 2] == "  opened 2 time(s) in the last 24 h:"
    newest, older = lines[circuit + 4], lines[circuit + 5]
    assert newest.split()[1:4] == ["ago", "yes", WORKER]  # the service runs in this process
    assert "401" in newest
    assert older.split()[2] == "no"
    assert "5 outbound failures in a row" in older
    call = lines.index("LAST CALL")
    assert (
        f" ago by {WORKER}: claimed 5, sent 0, 0 attempt(s) failed (0 to retry)" in lines[call + 1]
    )
    assert lines[call + 2].startswith("  circuit opened (answered 502): ")


@pytest.mark.parametrize("store_kind", ["postgres"])
async def test_a_call_whose_end_cannot_be_recorded_still_answers_what_it_did(
    service: Service, conn: asyncpg.Connection, capfd: pytest.CaptureFixture[str]
) -> None:
    await seed_campaign(conn, leads=2)
    await conn.execute("alter function record_campaign_queue_call rename to recorder_gone")

    response = await service.process()

    assert (response.status_code, response.json()["processed"]) == (200, 2)
    assert "could not record the call's end" in capfd.readouterr().err
