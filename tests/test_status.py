"""The status for people: app.status (pure formatting), GET /status and `python -m app status`."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from app.main import create_app
from app.sandbox.seed import seed_campaign
from app.sandbox.server import LoopbackServer
from app.status import count, duration, render, table, usd
from tests.service import Service
from tests.sql.helpers import write_before_the_constraints
from tests.stubs import CRON_SECRET, SettingsFactory

ROOT = Path(__file__).resolve().parent.parent

SAMPLE: dict[str, Any] = {
    "at": "2026-11-25T12:00:00+00:00",
    "queue": {"due": 1234, "scheduled": 56789, "in_flight": 3, "oldest_due_s": 192},
    "runs": [
        {
            "run_id": "e9931e22-d639-4e2a-a838-5291de9dd8b0",
            "status": "running",
            "inbox_id": "5fee64ef-3737-4f27-87ae-ff484b47b2d5",
            "total": 4000,
            "sent": 1200,
            "failed": 12,
            "skipped": 3,
            "pending": 2782,
            "in_flight": 3,
            "ai_tokens": 456789,
            "ai_cost_usd": 0.0123,
            "started_at": "2026-11-25T09:30:00+00:00",
            "error_message": None,
            "eta_s": 187_200,
        },
        {
            "run_id": "cc418787-a109-4fcb-8727-96d707bd7723",
            "status": "paused",
            "inbox_id": "42dd1f46-755b-463e-abfd-1c4c951d72cd",
            "total": 10,
            "sent": 0,
            "failed": 0,
            "skipped": 0,
            "pending": 10,
            "in_flight": 0,
            "ai_tokens": 0,
            "ai_cost_usd": 0,
            "started_at": "2026-11-25T11:58:00+00:00",
            "error_message": "inbox not connected (status: disconnected)",
            "eta_s": None,
        },
    ],
    "inboxes": [
        {
            "inbox_id": "42dd1f46-755b-463e-abfd-1c4c951d72cd",
            "sent_today": 0,
            "daily_cap": 0,
            "timezone": "America/Sao_Paulo",
            "next_slot_at": None,
            "min_gap_s": 0,
            "max_gap_s": 0,
            "pending": 0,
        },
        {
            "inbox_id": "5fee64ef-3737-4f27-87ae-ff484b47b2d5",
            "sent_today": 120,
            "daily_cap": 300,
            "timezone": "Asia/Tokyo",
            "next_slot_at": "2026-11-25T12:00:12+00:00",
            "min_gap_s": 20,
            "max_gap_s": 60,
            "pending": 2782,
        },
    ],
    "failures": [
        {"reason": "send: HTTP 400", "count": 9},
        {"reason": "openrouter: input flagged by moderation (HTTP 403; harassment)", "count": 3},
    ],
    "throughput": {"sent_5m": 7, "sent_60m": 88},
}


# --- formatting ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (float("nan"), "-"),
        (-5, "0s"),
        (0, "0s"),
        (0.2, "1s"),
        (45, "45s"),
        (60, "1m00s"),
        (192, "3m12s"),
        (3600, "1h00m"),
        (7500, "2h05m"),
        (86_400, "1d00h"),
        (187_200, "2d04h"),
    ],
)
def test_durations_are_short_and_human(seconds: float | None, text: str) -> None:
    assert duration(seconds) == text


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (None, "-"),
        (0, "$0.00"),
        (0.0123, "$0.0123"),
        (0.00001, "$0.000010"),
        (0.000043, "$0.000043"),
        (0.0009999, "$0.0010"),
        (1e-9, "<$0.000001"),
        (1.5, "$1.5000"),
        (1234.567, "$1,234.57"),
        (float("inf"), "-"),
    ],
)
def test_amounts_are_dollars(amount: float | None, text: str) -> None:
    assert usd(amount) == text


def test_counts_have_thousands_separators() -> None:
    assert (count(1234567), count(0), count(None)) == ("1,234,567", "0", "-")


def test_a_table_aligns_text_left_and_numbers_right() -> None:
    lines = table(["name", "n"], [["a", "1"], ["longer", "1,000"]], right={1})
    assert lines == ["  name        n", "  a           1", "  longer  1,000"]


def test_the_status_renders_as_aligned_tables() -> None:
    text = render(SAMPLE)
    lines = text.splitlines()

    assert lines[0] == "campaign-queue status at 2026-11-25 12:00:00 UTC"
    assert "3m12s" in text  # oldest due
    assert "1,234" in text
    assert "56,789" in text
    runs_header = next(line for line in lines if line.lstrip().startswith("run "))
    running = next(line for line in lines if line.lstrip().startswith("e9931e22"))
    paused = next(line for line in lines if line.lstrip().startswith("cc418787 "))
    assert len(runs_header) >= len(running)
    # Right-aligned columns end where their header ends.
    for column in ("sent", "cost", "ETA"):
        end = runs_header.index(column) + len(column)
        assert running[end - 1] != " ", column
    assert "1,200/4,000" in running
    assert "30%" in running  # sent, failed and skipped over the total
    assert "$0.0123" in running
    assert "456,789" in running
    assert "2h30m ago" in running
    assert running.rstrip().endswith("2d04h")
    assert paused.rstrip().endswith("-")
    assert "cc418787 paused: inbox not connected (status: disconnected)" in text
    for shown in ("120/300", "Asia/Tokyo", "20-60s", "in 12s", "0 (no cap)", "off"):
        assert shown in text
    assert "      9  send: HTTP 400" in text
    assert "moderation (HTTP 403; harassment)" in text
    assert text.endswith("\n")


def test_render_survives_an_empty_or_odd_answer() -> None:
    text = render({})
    assert "no running or paused run" in text
    assert "FAILURES, LAST 24 H" in text
    odd = render(
        {
            "at": "not a time",
            "queue": [],
            "runs": [{"run_id": None, "total": "x", "ai_cost_usd": True}, "junk"],
            "inboxes": None,
            "failures": [{"reason": "a\nb", "count": 1.0}],
        }
    )
    assert "RUNS (1)" in odd
    assert "a b" in odd


def test_render_names_the_run_asked_for() -> None:
    run_id = uuid.UUID(SAMPLE["runs"][0]["run_id"])
    assert render(SAMPLE, run_id=run_id).startswith(f"campaign-queue status of run {run_id} at")


# --- GET /status -------------------------------------------------------------------------------


async def get_status(service: Service, query: str = "", token: str | None = CRON_SECRET) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return await service.http.get(service.url + "/status" + query, headers=headers, timeout=30)


async def test_get_status_answers_the_databases_status(
    service: Service, conn: asyncpg.Connection
) -> None:
    one = await seed_campaign(conn, leads=3)
    two = await seed_campaign(conn, leads=2)
    assert (await service.process({"run_id": str(one.run_id)})).json()["processed"] == 3

    response = await get_status(service)

    assert response.status_code == 200
    body = response.json()
    assert set(body) >= {"at", "queue", "runs", "inboxes", "failures", "throughput"}
    assert [r["run_id"] for r in body["runs"]] == [str(two.run_id)]  # the other completed
    assert body["queue"]["due"] == 2
    assert body["throughput"]["sent_5m"] == 3
    # The service's pacing settings (off in the tests) reach the ETAs and the inboxes.
    [inbox] = body["inboxes"]
    assert (inbox["min_gap_s"], inbox["daily_cap"]) == (0, 0)
    assert inbox["timezone"] == service.settings.inbox_timezone  # the zone of its day

    response = await get_status(service, f"?run_id={one.run_id}")
    [run] = response.json()["runs"]
    assert (run["run_id"], run["status"], run["sent"]) == (str(one.run_id), "completed", 3)
    assert run["ai_cost_usd"] == pytest.approx(sum(service.stubs.openrouter.costs))


@pytest.mark.parametrize("store_kind", ["postgres"])
@pytest.mark.parametrize("query", ["?run_id=not-a-uuid", "?run_id=", "?run_id=123"])
async def test_a_run_id_that_is_not_a_uuid_is_422(service: Service, query: str) -> None:
    response = await get_status(service, query)
    assert response.status_code == 422
    assert "run_id" in json.dumps(response.json())


@pytest.mark.parametrize("store_kind", ["postgres"])
@pytest.mark.parametrize("token", [None, "wrong-token-0123456789"])
@pytest.mark.parametrize("query", ["", "?run_id=not-a-uuid"])
async def test_get_status_without_the_token_is_401(
    service: Service, token: str | None, query: str
) -> None:
    response = await get_status(service, query, token=token)
    assert response.status_code == 401
    assert response.json() == {"success": False, "error": "unauthorized"}


async def test_get_status_during_a_database_outage_is_503(make_settings: SettingsFactory) -> None:
    settings = make_settings(database_url="postgresql://postgres:pw@127.0.0.1:1/postgres")
    with LoopbackServer(create_app(settings), lifespan=True) as server:
        async with httpx.AsyncClient() as http:
            response = await http.get(
                server.url + "/status", headers={"Authorization": f"Bearer {CRON_SECRET}"}
            )
    assert response.status_code == 503
    assert response.json() == {"success": False, "error": "database unavailable"}


# --- python -m app status ----------------------------------------------------------------------


async def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app",
        *args,
        cwd=cwd,
        env=base | {"PYTHONPATH": str(ROOT)} | env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def test_the_cli_prints_tables_from_database_url_alone(
    conn: asyncpg.Connection, db_dsn: str, tmp_path: Path
) -> None:
    seeded = await seed_campaign(conn, leads=3)

    code, out, err = await run_cli(["status"], {"DATABASE_URL": db_dsn}, tmp_path)

    assert code == 0, err
    assert out.startswith("campaign-queue status at ")
    for section in ("QUEUE", "RUNS (1)", "INBOXES (1)", "FAILURES"):
        assert section in out
    assert str(seeded.run_id)[:8] in out
    assert "default INBOX_* pacing" in err  # without the service's settings, it says so
    assert "1m20s" in out  # 3 messages, the default pace: 2 gaps of 40 s

    code, out, _ = await run_cli(
        ["status", "--run-id", str(seeded.run_id), "--json"], {"DATABASE_URL": db_dsn}, tmp_path
    )
    assert code == 0
    assert json.loads(out)["runs"][0]["run_id"] == str(seeded.run_id)


async def test_the_cli_uses_the_services_settings_when_they_load(
    conn: asyncpg.Connection, db_dsn: str, tmp_path: Path
) -> None:
    await seed_campaign(conn, leads=3)
    env = {
        "DATABASE_URL": db_dsn,
        "OPENROUTER_API_KEY": "sk-or-test-key",
        "SEND_URL": "http://127.0.0.1:1/send",
        "SUPABASE_SERVICE_ROLE_KEY": "service-role-key",
        "CRON_SECRET": CRON_SECRET,
        "INBOX_MIN_GAP_S": "5",
        "INBOX_MAX_GAP_S": "5",
    }
    code, out, err = await run_cli(["status", "--json"], env, tmp_path)
    assert code == 0, err
    assert err == ""
    [run] = json.loads(out)["runs"]
    assert run["eta_s"] == 10


async def test_the_cli_refuses_a_bad_run_id_and_a_missing_database(tmp_path: Path) -> None:
    code, _, err = await run_cli(["status", "--run-id", "nope"], {}, tmp_path)
    assert code == 2
    assert "invalid UUID" in err
    code, _, err = await run_cli(["status"], {}, tmp_path)
    assert code == 2
    assert err.startswith("error: missing required settings")
    code, _, err = await run_cli(
        ["status"], {"DATABASE_URL": "postgresql://u:secret-pw@127.0.0.1:1/x"}, tmp_path
    )
    assert code == 1
    assert err.splitlines()[-1].startswith("error: ")
    assert "secret-pw" not in err


async def test_an_override_written_before_its_constraints_never_breaks_the_status(
    service: Service, conn: asyncpg.Connection, db_dsn: str, tmp_path: Path
) -> None:
    """A NaN and an Infinity in an inbox's overrides (rows the table took before it refused
    them) made GET /status answer 503 and `python -m app status` exit 1."""
    seeded = await seed_campaign(conn, leads=2)
    await write_before_the_constraints(
        conn, seeded.inbox_id, min_gap_s=float("nan"), max_gap_s=float("inf")
    )

    response = await get_status(service)
    code, out, err = await run_cli(["status"], {"DATABASE_URL": db_dsn}, tmp_path)

    assert response.status_code == 200, response.text
    [inbox] = response.json()["inboxes"]
    settings = service.settings  # read as unset: the service's settings
    assert (inbox["min_gap_s"], inbox["max_gap_s"]) == (
        settings.inbox_min_gap_s,
        settings.inbox_max_gap_s,
    )
    assert code == 0, err
    assert "INBOXES (1)" in out
    assert "20-60s" in out  # without the service's settings: the defaults
