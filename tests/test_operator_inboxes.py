"""Operators' actions on an inbox and a contact over real HTTP (the service on loopback, the
embedded Postgres, and PostgREST's stand-in for the Supabase store) and as `python -m app
inbox|contact` in a subprocess: lift a brake, the number-health overrides, suppress and
unsuppress a contact. The OPERATOR_TOKEN; what each changed; a bad id, a wrong state or a
bad value refused with nothing changed; never a phone number in an answer or a log line."""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from app.sandbox.seed import seed_campaign
from tests.service import Service
from tests.stubs import CRON_SECRET
from tests.test_operator import (  # noqa: F401 (fixtures)
    NOWHERE,
    OPERATOR_TOKEN,
    act,
    operator,
    operator_settings,
)
from tests.test_status import run_cli

PHONE = "+55 (11) 90000-0001"  # seed_campaign's first lead
DIGITS = "5511900000001"
LIFT = "/operator/inboxes/{}/lift-brake"
SUPPRESS, UNSUPPRESS = "/operator/contacts/suppress", "/operator/contacts/unsuppress"


async def put_brake_on(conn: asyncpg.Connection, inbox_id: uuid.UUID) -> None:
    """As the failure brake leaves it (sql/043_failure_brake.sql), with a send record."""
    await conn.execute(
        """insert into campaign_inbox_pacing_state (inbox_id, brake_until, brake_reason)
           values ($1, now() + interval '6 hours', '5 of the last 5 sends failed for good')""",
        inbox_id,
    )
    await conn.execute(
        """insert into campaign_inbox_send_outcomes (inbox_id, statuses)
           values ($1, '{404,404,404,404,404}')""",
        inbox_id,
    )


async def braked(conn: asyncpg.Connection, inbox_id: uuid.UUID) -> bool:
    return bool(
        await conn.fetchval(
            "select brake_until > now() from campaign_inbox_pacing_state where inbox_id = $1",
            inbox_id,
        )
    )


async def suppressions(conn: asyncpg.Connection) -> list[tuple[Any, ...]]:
    rows = await conn.fetch(
        "select workspace_id, phone_normalized, reason from campaign_suppressions order by 1, 2"
    )
    return [tuple(r) for r in rows]


async def pacing(conn: asyncpg.Connection, inbox_id: uuid.UUID) -> tuple[Any, Any]:
    row = await conn.fetchrow("select * from campaign_inbox_pacing where inbox_id = $1", inbox_id)
    day = await conn.fetchval(
        "select first_sent_day from campaign_inbox_pacing_state where inbox_id = $1", inbox_id
    )
    return (None if row is None else dict(row)), day


def field_refused(response: Any, field: str) -> str:
    """The 422's one problem, at `body.<field>`: its message."""
    assert response.status_code == 422, response.text
    [problem] = response.json()["detail"]
    assert problem["loc"] == ["body", field]
    message: str = problem["msg"]
    return message


# --- the token ------------------------------------------------------------------------------


@pytest.mark.parametrize("store_kind", ["postgres"])
async def test_without_an_operator_token_the_inbox_and_contact_routes_are_404(
    service: Service, conn: asyncpg.Connection
) -> None:
    seeded = await seed_campaign(conn, leads=1)
    await put_brake_on(conn, seeded.inbox_id)
    contact = {"workspace_id": str(seeded.workspace_id), "phone": PHONE}
    for path in (LIFT.format(seeded.inbox_id), SUPPRESS, UNSUPPRESS):
        for token in (None, CRON_SECRET, OPERATOR_TOKEN):
            response = await act(service, path, contact if "contacts" in path else None, token)
            assert response.status_code == 404, (path, token)
    assert await braked(conn, seeded.inbox_id)
    assert await suppressions(conn) == []


@pytest.mark.parametrize("store_kind", ["postgres"])
async def test_no_token_or_a_wrong_one_401_and_the_cron_secret_403_change_nothing(
    operator: Service,  # noqa: F811
    conn: asyncpg.Connection,
) -> None:
    seeded = await seed_campaign(conn, leads=1)
    await put_brake_on(conn, seeded.inbox_id)
    contact = {"workspace_id": str(seeded.workspace_id), "phone": PHONE}
    for path in (LIFT.format(seeded.inbox_id), SUPPRESS, UNSUPPRESS):
        body = contact if "contacts" in path else None
        assert (await act(operator, path, body, token=None)).status_code == 401
        assert (await act(operator, path, body, token="not-the-operator-token!")).status_code == 401
        assert (await act(operator, path, body, token=CRON_SECRET)).status_code == 403
        header = await operator.http.post(
            operator.url + path, json=body, headers={"X-Cron-Secret": CRON_SECRET}, timeout=30
        )
        assert header.status_code == 403
    assert await braked(conn, seeded.inbox_id)
    assert await suppressions(conn) == []


# --- lift a brake -----------------------------------------------------------------------------


async def test_lift_a_brake_over_http(operator: Service, conn: asyncpg.Connection) -> None:  # noqa: F811
    seeded = await seed_campaign(conn, leads=1)
    await put_brake_on(conn, seeded.inbox_id)
    path = LIFT.format(seeded.inbox_id)

    lifted = await act(operator, path)

    assert lifted.status_code == 200, lifted.text
    answer = lifted.json()
    assert (answer["success"], answer["ok"], answer["inbox_id"]) == (
        True,
        True,
        str(seeded.inbox_id),
    )
    assert answer["brake_reason_before"] == "5 of the last 5 sends failed for good"
    until_before = datetime.fromisoformat(answer["brake_until_before"])
    assert until_before > datetime.fromisoformat(answer["brake_until_after"])
    assert answer["brake_reason_after"] is None
    assert not await braked(conn, seeded.inbox_id)
    assert await conn.fetchval("select count(*) from campaign_inbox_send_outcomes") == 0

    again = await act(operator, path)
    assert (again.status_code, again.json()["error"]) == (409, "not_braked")
    unknown = await act(operator, LIFT.format(NOWHERE))
    assert (unknown.status_code, unknown.json()["error"]) == (404, "inbox_not_found")


@pytest.mark.parametrize("store_kind", ["postgres"])
async def test_a_bad_lift_request_is_refused_and_keeps_the_brake(
    operator: Service,  # noqa: F811
    conn: asyncpg.Connection,
) -> None:
    seeded = await seed_campaign(conn, leads=1)
    await put_brake_on(conn, seeded.inbox_id)
    not_uuid = await act(operator, LIFT.format("nope"))
    assert (not_uuid.status_code, not_uuid.json()["detail"][0]["loc"]) == (
        422,
        ["path", "inbox_id"],
    )
    field_refused(await act(operator, LIFT.format(seeded.inbox_id), {"until": "now"}), "until")
    assert await braked(conn, seeded.inbox_id)
    assert await conn.fetchval("select count(*) from campaign_inbox_send_outcomes") == 1


# --- suppress and unsuppress a contact -----------------------------------------------------------


async def test_suppress_and_unsuppress_over_http_never_show_the_phone(
    operator: Service,  # noqa: F811
    conn: asyncpg.Connection,
    capfd: pytest.CaptureFixture[str],
) -> None:
    seeded = await seed_campaign(conn, leads=1)
    workspace = str(seeded.workspace_id)
    contact = {"workspace_id": workspace, "phone": PHONE}
    capfd.readouterr()

    added = await act(operator, SUPPRESS, {**contact, "reason": "asked by phone"})
    assert added.status_code == 200, added.text
    assert {k: v for k, v in added.json().items() if k != "suppressed_at"} == {
        "success": True,
        "ok": True,
        "reason": None,
        "workspace_id": workspace,
        "phone": "***0001",
        "suppressed_before": False,
        "suppressed_after": True,
        "suppression_reason": "asked by phone",
    }
    assert await suppressions(conn) == [(seeded.workspace_id, DIGITS, "asked by phone")]
    again = await act(operator, SUPPRESS, contact)
    assert (again.status_code, again.json()["error"]) == (409, "already_suppressed")
    assert again.json()["suppression_reason"] == "asked by phone"

    removed = await act(operator, UNSUPPRESS, contact)
    assert removed.status_code == 200
    assert (removed.json()["suppressed_before"], removed.json()["suppressed_after"]) == (
        True,
        False,
    )
    assert await suppressions(conn) == []
    gone = await act(operator, UNSUPPRESS, contact)
    assert (gone.status_code, gone.json()["error"]) == (409, "not_suppressed")

    logged = capfd.readouterr()
    for text in (added.text, again.text, removed.text, gone.text, logged.out, logged.err):
        assert "900000001" not in text
        assert "90000-0001" not in text
    lines = [json.loads(x) for x in logged.err.splitlines() if x.startswith("{")]
    assert [x["message"] for x in lines if x["message"].startswith("operator action")] == [
        "operator action",
        "operator action refused",
        "operator action",
        "operator action refused",
    ]


@pytest.mark.parametrize("store_kind", ["postgres"])
async def test_a_bad_contact_is_refused_naming_the_field_and_changes_nothing(
    operator: Service,  # noqa: F811
    conn: asyncpg.Connection,
) -> None:
    seeded = await seed_campaign(conn, leads=1)
    workspace = str(seeded.workspace_id)
    assert (await act(operator, SUPPRESS, {"workspace_id": workspace, "phone": PHONE})).is_success
    before = await suppressions(conn)

    for path in (SUPPRESS, UNSUPPRESS):
        short = await act(operator, path, {"workspace_id": workspace, "phone": "+55 11 900"})
        assert (
            field_refused(short, "phone") == "phone: not a phone number: 7 digits, 8 to 15 expected"
        )
        assert "11 900" not in short.text
        letters = await act(operator, path, {"workspace_id": workspace, "phone": "call me"})
        assert field_refused(letters, "phone").startswith("phone: not a phone number: only")
        field_refused(await act(operator, path, {"workspace_id": workspace}), "phone")
        field_refused(
            await act(operator, path, {"workspace_id": "nope", "phone": PHONE}), "workspace_id"
        )
        unknown = await act(operator, path, {"workspace_id": str(NOWHERE), "phone": PHONE})
        assert (unknown.status_code, unknown.json()["error"]) == (404, "workspace_not_found")
    no_reason = {"workspace_id": workspace, "phone": PHONE, "reason": "x"}
    field_refused(await act(operator, UNSUPPRESS, no_reason), "reason")
    assert await suppressions(conn) == before


# --- the number-health overrides ---------------------------------------------------------------


async def test_the_number_health_overrides_over_http(
    operator: Service,  # noqa: F811
    conn: asyncpg.Connection,
) -> None:
    seeded = await seed_campaign(conn, leads=1)
    path = f"/operator/inboxes/{seeded.inbox_id}/pacing"
    body = {
        "daily_cap": 200,
        "warmup_days": 14,
        "warmup_start_cap": 20,
        "hourly_cap": 30,
        "first_sent_day": "2026-11-20",
    }

    answer = await act(operator, path, body)

    assert answer.status_code == 200, answer.text
    after = answer.json()
    assert {k: after["overrides_after"][k] for k in body if k != "first_sent_day"} == {
        "daily_cap": 200,
        "warmup_days": 14,
        "warmup_start_cap": 20,
        "hourly_cap": 30,
    }
    assert (after["first_sent_day_before"], after["first_sent_day_after"]) == (None, "2026-11-20")
    stored = await pacing(conn, seeded.inbox_id)
    assert stored[1] == date(2026, 11, 20)

    above = await act(operator, path, {"warmup_start_cap": 201})
    assert field_refused(above, "warmup_start_cap") == "warmup_start_cap: not above daily_cap"
    future = (date.today() + timedelta(days=3)).isoformat()
    refused = await act(operator, path, {"hourly_cap": 5, "first_sent_day": future})
    assert field_refused(refused, "first_sent_day") == "first_sent_day: not after today"
    assert await pacing(conn, seeded.inbox_id) == stored


@pytest.mark.parametrize("store_kind", ["postgres"])
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"warmup_days": 3651}, "warmup_days"),
        ({"warmup_days": -1}, "warmup_days"),
        ({"warmup_start_cap": 0}, "warmup_start_cap"),
        ({"hourly_cap": 3601}, "hourly_cap"),
        ({"hourly_cap": 1.5}, "hourly_cap"),
        ({"first_sent_day": "2026-13-01"}, "first_sent_day"),
    ],
)
async def test_a_number_health_value_out_of_range_is_422_naming_it(
    operator: Service,  # noqa: F811
    conn: asyncpg.Connection,
    body: dict[str, Any],
    field: str,
) -> None:
    seeded = await seed_campaign(conn, leads=1)
    path = f"/operator/inboxes/{seeded.inbox_id}/pacing"
    field_refused(await act(operator, path, body), field)
    assert await pacing(conn, seeded.inbox_id) == (None, None)


# --- python -m app inbox | contact ---------------------------------------------------------------


async def test_the_cli_lifts_a_brake_sets_day_0_and_suppresses(
    conn: asyncpg.Connection, db_dsn: str, tmp_path: Path
) -> None:
    seeded = await seed_campaign(conn, leads=1)
    await put_brake_on(conn, seeded.inbox_id)
    env = {"DATABASE_URL": db_dsn}
    inbox, workspace = str(seeded.inbox_id), str(seeded.workspace_id)

    code, out, err = await run_cli(["inbox", "lift-brake", inbox], env, tmp_path)
    assert code == 0, err
    assert json.loads(out)["brake_reason_before"] == "5 of the last 5 sends failed for good"
    code, out, err = await run_cli(["inbox", "lift-brake", inbox], env, tmp_path)
    assert (code, json.loads(out)["reason"]) == (1, "not_braked")
    assert "refused: not_braked; nothing changed" in err
    assert not await braked(conn, seeded.inbox_id)

    code, out, err = await run_cli(
        ["inbox", "set", inbox, "--hourly-cap", "30", "--first-sent-day", "2026-11-20"],
        env,
        tmp_path,
    )
    assert code == 0, err
    answer = json.loads(out)
    assert (answer["overrides_after"]["hourly_cap"], answer["first_sent_day_after"]) == (
        30,
        "2026-11-20",
    )

    code, out, err = await run_cli(
        ["contact", "suppress", workspace, PHONE, "--reason", "wrote STOP"], env, tmp_path
    )
    assert code == 0, err
    assert (json.loads(out)["phone"], json.loads(out)["suppression_reason"]) == (
        "***0001",
        "wrote STOP",
    )
    code, out, err = await run_cli(["contact", "suppress", workspace, PHONE], env, tmp_path)
    assert (code, json.loads(out)["reason"]) == (1, "already_suppressed")
    assert DIGITS not in out + err
    code, out, _ = await run_cli(["contact", "unsuppress", workspace, DIGITS], env, tmp_path)
    assert (code, json.loads(out)["suppressed_after"]) == (0, False)
    assert DIGITS not in out
    assert await suppressions(conn) == []


async def test_the_cli_refuses_bad_values_and_changes_nothing(
    conn: asyncpg.Connection, db_dsn: str, tmp_path: Path
) -> None:
    seeded = await seed_campaign(conn, leads=1)
    env = {"DATABASE_URL": db_dsn}
    inbox, workspace = str(seeded.inbox_id), str(seeded.workspace_id)

    code, out, err = await run_cli(["contact", "suppress", workspace, "+55 11 9"], env, tmp_path)
    assert (code, json.loads(out)["field"]) == (1, "phone")
    assert "refused: phone: not a phone number: 5 digits, 8 to 15 expected" in err
    code, out, _ = await run_cli(["contact", "suppress", str(NOWHERE), PHONE], env, tmp_path)
    assert (code, json.loads(out)["reason"]) == (1, "workspace_not_found")
    code, out, _ = await run_cli(["inbox", "lift-brake", str(NOWHERE)], env, tmp_path)
    assert (code, json.loads(out)["reason"]) == (1, "inbox_not_found")
    code, out, _ = await run_cli(["inbox", "set", inbox, "--warmup-start-cap", "0"], env, tmp_path)
    assert code == 2
    code, _, err = await run_cli(["inbox", "set", inbox, "--hourly-cap", "3601"], env, tmp_path)
    assert (code, "--hourly-cap" in err) == (2, True)
    code, _, err = await run_cli(
        ["inbox", "set", inbox, "--first-sent-day", "20 Nov"], env, tmp_path
    )
    assert (code, "--first-sent-day" in err) == (2, True)
    code, _, err = await run_cli(["inbox", "lift-brake", inbox, "--daily-cap", "3"], env, tmp_path)
    assert code == 2
    assert "--daily-cap: only `inbox set` takes it, not `inbox lift-brake`" in err
    code, _, err = await run_cli(
        ["contact", "unsuppress", workspace, PHONE, "--reason", "x"], env, tmp_path
    )
    assert (code, "--reason: unsuppress takes no reason" in err) == (2, True)
    assert await suppressions(conn) == []
    assert await pacing(conn, seeded.inbox_id) == (None, None)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (SUPPRESS, {"phone": "+55 11 90000\u00000001"}, "phone"),
        (SUPPRESS, {"phone": PHONE, "reason": "wrote\u0000STOP"}, "reason"),
        ("/operator/inboxes/{inbox}/pacing", {"timezone": "UTC\u0000"}, "timezone"),
        ("/operator/runs/{run}/pause", {"reason": "a\u0000b"}, "reason"),
    ],
)
async def test_a_nul_character_is_422_naming_the_field_not_a_database_outage(
    operator: Service,  # noqa: F811
    conn: asyncpg.Connection,
    path: str,
    body: dict[str, Any],
    field: str,
) -> None:
    """Postgres text cannot hold a NUL: the value is refused as bad input, not sent to the
    database to come back as a 503 `database unavailable`."""
    seeded = await seed_campaign(conn, leads=1)
    path = path.format(inbox=seeded.inbox_id, run=seeded.run_id)
    if "contacts" in path:
        body = {"workspace_id": str(seeded.workspace_id), **body}
    why = field_refused(await act(operator, path, body), field)
    assert "NUL" in why
    assert await suppressions(conn) == []
    assert await pacing(conn, seeded.inbox_id) == (None, None)
    assert await conn.fetchval("select status from campaign_runs") == "running"
