"""Operators' actions over real HTTP (the service on loopback, the embedded Postgres) and as
`python -m app run|inbox` in a subprocess: the OPERATOR_TOKEN, what each action changed, a
bad id or a wrong state refused with nothing changed."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from pydantic import SecretStr

from app.main import create_app
from app.sandbox.seed import seed_campaign
from app.sandbox.server import LoopbackServer
from app.sandbox.stubs import Fault, Latency, RequestInfo
from app.settings import Settings
from tests.processing.invariants import assert_no_lease_left
from tests.service import Service
from tests.stubs import CRON_SECRET, Stubs
from tests.test_status import run_cli

OPERATOR_TOKEN = "test-operator-token-0123456789"
NOWHERE = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def operator_settings(service_settings: Settings) -> Settings:
    return service_settings.model_copy(update={"operator_token": SecretStr(OPERATOR_TOKEN)})


@pytest_asyncio.fixture
async def operator(operator_settings: Settings, stubs: Stubs) -> AsyncIterator[Service]:
    with LoopbackServer(create_app(operator_settings), lifespan=True) as server:
        async with httpx.AsyncClient() as http:
            yield Service(server.url, operator_settings, stubs, http)


async def act(
    service: Service,
    path: str,
    body: dict[str, Any] | None = None,
    token: str | None = OPERATOR_TOKEN,
    method: str = "POST",
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return await service.http.request(
        method, service.url + path, json=body, headers=headers, timeout=30
    )


async def message_statuses(conn: asyncpg.Connection, run_id: uuid.UUID) -> list[str]:
    rows = await conn.fetch(
        "select status from campaign_messages where run_id = $1 order by id", run_id
    )
    return [r["status"] for r in rows]


@pytest.mark.parametrize("store_kind", ["postgres"])
async def test_without_an_operator_token_every_operator_route_is_404(
    service: Service, conn: asyncpg.Connection
) -> None:
    seeded = await seed_campaign(conn, leads=1)
    for path in (f"/operator/runs/{seeded.run_id}/cancel", f"/operator/inboxes/{NOWHERE}/pacing"):
        for token in (None, CRON_SECRET, OPERATOR_TOKEN):
            response = await act(service, path, token=token)
            assert response.status_code == 404, (path, token)
    assert (await conn.fetchval("select status from campaign_runs")) == "running"


@pytest.mark.parametrize("store_kind", ["postgres"])
async def test_without_an_operator_token_every_method_on_the_console_and_operator_paths_is_404(
    service: Service,
) -> None:
    # Another method on a route that exists answered 405, which told a prober the console
    # and the actions are there; without the token they must not seem to exist at all.
    asked = [
        ("GET", f"/operator/runs/{NOWHERE}/pause"),
        ("PUT", f"/operator/inboxes/{NOWHERE}/pacing"),
        ("GET", "/operator/contacts/suppress"),
        ("POST", "/console"),
        ("GET", "/console/sign-out"),
        ("DELETE", "/console/sign-in"),
        ("GET", f"/console/runs/{NOWHERE}/pause"),
    ]
    for method, path in asked:
        response = await service.http.request(method, service.url + path, timeout=30)
        assert response.status_code == 404, (method, path, response.status_code)


@pytest.mark.parametrize("store_kind", ["postgres"])
async def test_with_an_operator_token_another_method_is_still_405(operator: Service) -> None:
    response = await operator.http.get(operator.url + f"/operator/runs/{NOWHERE}/pause")
    assert (response.status_code, response.headers["allow"]) == (405, "POST")


@pytest.mark.parametrize("store_kind", ["postgres"])
async def test_no_token_a_wrong_one_401_and_the_cron_secret_403_each_logged_without_it(
    operator: Service, conn: asyncpg.Connection, capfd: pytest.CaptureFixture[str]
) -> None:
    seeded = await seed_campaign(conn, leads=1)
    path = f"/operator/runs/{seeded.run_id}/pause"
    capfd.readouterr()

    assert (await act(operator, path, token=None)).status_code == 401
    wrong = await act(operator, path, token="not-the-operator-token-at-all")
    assert (wrong.status_code, wrong.json()) == (401, {"success": False, "error": "unauthorized"})
    cron = await act(operator, path, token=CRON_SECRET)
    assert cron.status_code == 403
    assert cron.json()["error"] == "forbidden: the CRON_SECRET cannot act on campaigns"
    header = await operator.http.post(
        operator.url + path, headers={"X-Cron-Secret": CRON_SECRET}, timeout=30
    )
    assert header.status_code == 403

    lines = [json.loads(x) for x in capfd.readouterr().err.splitlines() if x.startswith("{")]
    ours = [x["message"] for x in lines if x["message"].startswith(("unauthorized", "forbid"))]
    where = f"POST {path} from 127.0.0.1: "
    assert ours == [
        f"unauthorized: {where}no secret",
        f"unauthorized: {where}wrong secret",
        *[f"forbidden: {where}the CRON_SECRET cannot act on campaigns (use the OPERATOR_TOKEN)"]
        * 2,
    ]
    text = json.dumps(lines)
    assert CRON_SECRET not in text
    assert OPERATOR_TOKEN not in text
    assert "not-the-operator-token" not in text
    assert await message_statuses(conn, seeded.run_id) == ["pending"]
    assert (await conn.fetchval("select status from campaign_runs")) == "running"


async def test_pause_resume_cancel_over_http(operator: Service, conn: asyncpg.Connection) -> None:
    seeded = await seed_campaign(conn, leads=2)
    runs = f"/operator/runs/{seeded.run_id}"

    paused = await act(operator, runs + "/pause", {"reason": "checking the copy"})
    assert paused.status_code == 200
    assert paused.json() == {
        "success": True,
        "ok": True,
        "reason": None,
        "run_id": str(seeded.run_id),
        "status_before": "running",
        "status_after": "paused",
        "messages_changed": 0,
    }
    again = await act(operator, runs + "/pause")
    assert (again.status_code, again.json()["error"]) == (409, "not_running")

    resumed = await act(operator, runs + "/resume")
    assert (resumed.status_code, resumed.json()["status_after"]) == (200, "running")

    cancelled = await act(operator, runs + "/cancel")
    assert cancelled.status_code == 200
    assert (cancelled.json()["status_after"], cancelled.json()["messages_changed"]) == (
        "cancelled",
        2,
    )
    assert await message_statuses(conn, seeded.run_id) == ["skipped", "skipped"]
    refused = await act(operator, runs + "/requeue")
    assert (refused.status_code, refused.json()["error"]) == (409, "run_cancelled")


@pytest.mark.parametrize("store_kind", ["postgres"])
async def test_bad_ids_and_bodies_are_refused_and_change_nothing(
    operator: Service, conn: asyncpg.Connection
) -> None:
    seeded = await seed_campaign(conn, leads=1)
    unknown = await act(operator, f"/operator/runs/{NOWHERE}/cancel")
    assert (unknown.status_code, unknown.json()["error"]) == (404, "run_not_found")
    not_uuid = await act(operator, "/operator/runs/nope/cancel")
    assert not_uuid.status_code == 422
    assert not_uuid.json()["detail"][0]["loc"] == ["path", "run_id"]
    extra = await act(operator, f"/operator/runs/{seeded.run_id}/cancel", {"why": "x"})
    assert (extra.status_code, extra.json()["detail"][0]["loc"]) == (422, ["body", "why"])
    listed = await act(operator, f"/operator/runs/{seeded.run_id}/pause", None)
    assert listed.status_code == 200  # an empty body is `{}`
    nulled = await operator.http.post(
        operator.url + f"/operator/runs/{seeded.run_id}/resume",
        content=b"null",
        headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
    )
    assert nulled.status_code == 422
    assert nulled.json()["detail"][0]["msg"] == "body must be a JSON object (or empty), not null"
    assert (await conn.fetchval("select status from campaign_runs")) == "paused"
    assert await message_statuses(conn, seeded.run_id) == ["pending"]


@pytest.mark.parametrize("store_kind", ["postgres"])
async def test_requeue_one_reason_group_over_http(
    operator: Service, conn: asyncpg.Connection
) -> None:
    seeded = await seed_campaign(conn, leads=3)
    errors = ["send failed: HTTP 500 after 10 ms", "send failed: HTTP 500 after 99 ms", "nope"]
    for message_id, error in zip(seeded.message_ids, errors, strict=True):
        await conn.execute(
            "update campaign_messages set status = 'failed', error_message = $2 where id = $1",
            message_id,
            error,
        )
    path = f"/operator/runs/{seeded.run_id}/requeue"

    answer = await act(operator, path, {"reason": "send failed: HTTP 500 after <n> ms"})

    assert (answer.status_code, answer.json()["messages_changed"]) == (200, 2)
    rows = await conn.fetch(
        "select id, status from campaign_messages where run_id = $1", seeded.run_id
    )
    by_id = {r["id"]: r["status"] for r in rows}
    assert [by_id[m] for m in seeded.message_ids] == ["pending", "pending", "failed"]
    none = await act(operator, path, {"reason": "send failed: HTTP 500 after <n> ms"})
    assert (none.status_code, none.json()["error"]) == (409, "nothing_to_requeue")


async def test_set_and_clear_an_inboxs_pacing_over_http(
    operator: Service, conn: asyncpg.Connection
) -> None:
    seeded = await seed_campaign(conn, leads=1)
    path = f"/operator/inboxes/{seeded.inbox_id}/pacing"

    answer = await act(operator, path, {"min_gap_s": 30, "max_gap_s": 60, "daily_cap": 200})
    assert answer.status_code == 200
    assert answer.json()["overrides_after"] == {
        "min_gap_s": 30,
        "max_gap_s": 60,
        "daily_cap": 200,
        "timezone": None,
        "warmup_days": None,
        "warmup_start_cap": None,
        "hourly_cap": None,
    }
    refused = await act(operator, path, {"max_gap_s": 10})
    assert refused.status_code == 422
    assert refused.json() == {
        "success": False,
        "detail": [
            {
                "loc": ["body", "max_gap_s"],
                "msg": "max_gap_s: not below min_gap_s",
                "type": "value_error",
            }
        ],
    }
    empty = await act(operator, path, {})
    assert empty.status_code == 422
    cleared = await act(operator, path, method="DELETE")
    assert (cleared.status_code, cleared.json()["overrides_after"]) == (200, None)
    again = await act(operator, path, method="DELETE")
    assert (again.status_code, again.json()["error"]) == (409, "no_overrides")
    unknown = await act(operator, f"/operator/inboxes/{NOWHERE}/pacing", {"daily_cap": 1})
    assert (unknown.status_code, unknown.json()["error"]) == (404, "inbox_not_found")


# --- python -m app run | inbox ------------------------------------------------------------------


async def test_the_cli_acts_from_the_database_settings_alone(
    conn: asyncpg.Connection, db_dsn: str, tmp_path: Path
) -> None:
    seeded = await seed_campaign(conn, leads=2)
    env = {"DATABASE_URL": db_dsn}
    run = str(seeded.run_id)

    code, out, err = await run_cli(["run", "pause", run, "--reason", "hold on"], env, tmp_path)
    assert code == 0, err
    assert json.loads(out)["status_after"] == "paused"
    code, out, err = await run_cli(["run", "pause", run], env, tmp_path)
    assert code == 1
    assert json.loads(out)["reason"] == "not_running"
    assert "refused: not_running; nothing changed" in err

    code, out, _ = await run_cli(["run", "cancel", run], env, tmp_path)
    assert (code, json.loads(out)["messages_changed"]) == (0, 2)
    code, out, _ = await run_cli(["run", "requeue", run], env, tmp_path)
    assert (code, json.loads(out)["reason"]) == (1, "run_cancelled")
    code, out, _ = await run_cli(["run", "resume", NOWHERE], env, tmp_path)
    assert (code, json.loads(out)["reason"]) == (1, "run_not_found")

    inbox = str(seeded.inbox_id)
    code, out, err = await run_cli(
        ["inbox", "set", inbox, "--daily-cap", "40", "--timezone", "UTC"], env, tmp_path
    )
    assert code == 0, err
    assert json.loads(out)["overrides_after"]["daily_cap"] == 40
    code, out, err = await run_cli(["inbox", "set", inbox, "--timezone", "Mars/X"], env, tmp_path)
    assert (code, json.loads(out)["field"]) == (1, "timezone")
    code, _, err = await run_cli(["inbox", "set", inbox, "--daily-cap", "-1"], env, tmp_path)
    assert code == 2
    assert "--daily-cap" in err
    code, out, _ = await run_cli(["inbox", "clear", inbox], env, tmp_path)
    assert (code, json.loads(out)["overrides_after"]) == (0, None)
    assert await conn.fetchval("select count(*) from campaign_inbox_pacing") == 0


async def test_the_cli_refuses_bad_arguments_in_one_line(tmp_path: Path) -> None:
    env = {"DATABASE_URL": "postgresql://u@127.0.0.1:1/x"}
    code, _, err = await run_cli(["run", "cancel", "nope"], env, tmp_path)
    assert code == 2
    assert "invalid UUID value" in err
    code, _, err = await run_cli(["run", "resume", NOWHERE, "--reason", "x"], env, tmp_path)
    assert code == 2
    assert "resume takes no reason" in err
    code, _, err = await run_cli(["run", "cancel", NOWHERE], {}, tmp_path)
    assert code == 2
    assert "DATABASE_URL" in err
    code, _, err = await run_cli(["run", "cancel", NOWHERE], env, tmp_path)
    assert code == 3
    assert "database unavailable" in err


@pytest.mark.parametrize("store_kind", ["postgres"])
async def test_requeue_of_a_message_failed_with_a_part_out_resumes_it_never_resending_a_part(
    operator: Service, conn: asyncpg.Connection
) -> None:
    seeded = await seed_campaign(conn, leads=1, split_messages=True, min_chars_to_split=10)
    [message] = seeded.message_ids
    operator.stubs.send.faults.status = 400  # refused for good: no retry

    def refuse_the_second_part(info: RequestInfo) -> Fault | None:
        return Fault.STATUS if info.headers.get("idempotency-key") == f"{message}:1" else None

    operator.stubs.send.faults.rules.append(refuse_the_second_part)
    assert (await operator.process()).status_code == 200
    failed = await conn.fetchrow(
        """select status, parts_sent, jsonb_array_length(message_parts) as parts, error_message
             from campaign_messages where id = $1""",
        message,
    )
    assert (failed["status"], failed["parts_sent"]) == ("failed", 1)
    assert failed["parts"] >= 2
    status = await operator.http.get(
        operator.url + "/status", headers={"Authorization": f"Bearer {CRON_SECRET}"}
    )
    [group] = [f["reason"] for f in status.json()["failures"]]

    operator.stubs.send.faults.rules.clear()
    answer = await act(operator, f"/operator/runs/{seeded.run_id}/requeue", {"reason": group})
    assert (answer.status_code, answer.json()["messages_changed"]) == (200, 1)
    assert (await operator.process()).status_code == 200

    sent = await conn.fetchrow(
        "select status, parts_sent from campaign_messages where id = $1", message
    )
    delivered = Counter(operator.stubs.send.delivered_keys())
    assert (sent["status"], sent["parts_sent"]) == ("sent", failed["parts"])
    assert delivered == Counter(f"{message}:{i}" for i in range(failed["parts"]))
    assert operator.stubs.send.duplicate_keys == 0  # the first part never asked for again
    assert (await conn.fetchval("select status from campaign_runs")) == "completed"
    await assert_no_lease_left(conn)


@pytest.mark.parametrize("store_kind", ["postgres"])
async def test_each_action_logs_what_it_changed_never_the_phone(
    operator: Service, conn: asyncpg.Connection, capfd: pytest.CaptureFixture[str]
) -> None:
    # The routes pick status_after and workspace_id for their log line; the log dropped both,
    # so a pause and a cancel logged the same line and a suppression named no workspace.
    seeded = await seed_campaign(conn, leads=1)
    workspace = await conn.fetchval("select workspace_id from campaign_configs")
    capfd.readouterr()

    assert (await act(operator, f"/operator/runs/{seeded.run_id}/pause")).status_code == 200
    assert (await act(operator, f"/operator/runs/{seeded.run_id}/cancel")).status_code == 200
    contact = {"workspace_id": str(workspace), "phone": "+55 11 98765-4321"}
    assert (await act(operator, "/operator/contacts/suppress", contact)).status_code == 200

    lines = [json.loads(x) for x in capfd.readouterr().err.splitlines() if x.startswith("{")]
    actions = [x for x in lines if x["message"] == "operator action"]
    assert [(x.get("run_id"), x.get("status_after")) for x in actions[:2]] == [
        (str(seeded.run_id), "paused"),
        (str(seeded.run_id), "cancelled"),
    ]
    assert actions[2].get("workspace_id") == str(workspace)
    assert "98765" not in json.dumps(lines)


# --- cancelling a run being worked ----------------------------------------------------------


@pytest.mark.parametrize("store_kind", ["postgres"])
async def test_cancel_while_the_model_is_writing_stops_at_the_message_boundary(
    operator: Service, conn: asyncpg.Connection
) -> None:
    seeded = await seed_campaign(conn, leads=6, split_messages=True, min_chars_to_split=10)
    operator.stubs.openrouter.latency = Latency(fixed_ms=800)
    call = asyncio.create_task(operator.process({"batch_size": 6, "concurrency": 2}))
    await wait_for_status(conn, "generating")

    cancelled = await act(operator, f"/operator/runs/{seeded.run_id}/cancel")
    response = await call

    assert cancelled.status_code == 200
    assert response.status_code == 200
    assert (await conn.fetchval("select status from campaign_runs")) == "cancelled"
    rows = await conn.fetch(
        """select id, status, error_message, parts_sent,
                  coalesce(jsonb_array_length(message_parts), 0) as parts
             from campaign_messages where run_id = $1""",
        seeded.run_id,
    )
    delivered = Counter(k.split(":")[0] for k in operator.stubs.send.delivered_keys())
    skipped = [r for r in rows if r["status"] == "skipped"]
    assert skipped, "the cancel came while the model was writing: some message is skipped"
    for row in rows:  # sent in full, or skipped with nothing of it out: never half-sent
        if row["status"] == "sent":
            assert row["parts_sent"] == row["parts"] == delivered[str(row["id"])] > 0
        else:
            assert (row["status"], row["error_message"]) == ("skipped", "cancelled")
            assert row["parts_sent"] == delivered[str(row["id"])] == 0
    await assert_no_lease_left(conn)
    assert await operator.process() is not None
    assert (await conn.fetchval("select status from campaign_runs")) == "cancelled"


@pytest.mark.parametrize("store_kind", ["postgres"])
async def test_cancel_while_a_message_has_parts_out_lets_it_finish_its_parts(
    operator: Service, conn: asyncpg.Connection
) -> None:
    # One message due, the other an hour later (never claimed here: the cancel skips it).
    seeded = await seed_campaign(
        conn, leads=2, split_messages=True, min_chars_to_split=10, spacing=timedelta(hours=1)
    )
    first, later = seeded.message_ids
    second_part_asked, cancel_done = threading.Event(), threading.Event()

    def hold_the_second_part(info: RequestInfo) -> None:
        # The send stub's own thread: its first part delivered and recorded, the message
        # waits here, mid-send, until the operator's cancel has answered.
        if info.headers.get("idempotency-key") == f"{first}:1":
            second_part_asked.set()
            cancel_done.wait(timeout=20)

    operator.stubs.send.faults.rules.append(hold_the_second_part)
    call = asyncio.create_task(operator.process({"batch_size": 1, "concurrency": 1}))
    try:
        assert await asyncio.to_thread(second_part_asked.wait, 20)
        out = await conn.fetchrow(
            "select status, parts_sent from campaign_messages where id = $1", first
        )
        assert (out["status"], out["parts_sent"]) == ("sending", 1)
        cancelled = await act(operator, f"/operator/runs/{seeded.run_id}/cancel")
    finally:
        cancel_done.set()
    response = await call

    assert cancelled.status_code == 200
    assert (cancelled.json()["status_after"], cancelled.json()["messages_changed"]) == (
        "cancelled",
        1,  # the later message; the one being sent is leased, not waited on
    )
    assert response.status_code == 200
    sent = await conn.fetchrow(
        """select status, parts_sent, jsonb_array_length(message_parts) as parts
             from campaign_messages where id = $1""",
        first,
    )
    delivered = Counter(k.split(":")[0] for k in operator.stubs.send.delivered_keys())
    assert sent["status"] == "sent"  # finished: every part out, none twice
    assert sent["parts_sent"] == sent["parts"] == delivered[str(first)] >= 2
    assert operator.stubs.send.duplicate_keys == 0
    skipped = await conn.fetchrow(
        "select status, error_message, parts_sent from campaign_messages where id = $1", later
    )
    assert tuple(skipped) == ("skipped", "cancelled", 0)
    assert (await conn.fetchval("select status from campaign_runs")) == "cancelled"
    await assert_no_lease_left(conn)


@pytest.mark.parametrize("store_kind", ["postgres"])
async def test_cancel_on_one_instance_while_two_instances_send_the_run(
    operator: Service, operator_settings: Settings, conn: asyncpg.Connection
) -> None:
    seeded = await seed_campaign(conn, leads=12, split_messages=True, min_chars_to_split=10)
    operator.stubs.send.latency = Latency(fixed_ms=120)
    with LoopbackServer(create_app(operator_settings), lifespan=True) as other:
        second = Service(other.url, operator_settings, operator.stubs, operator.http)
        body = {"batch_size": 3, "concurrency": 2}
        calls = [asyncio.create_task(s.process(body)) for s in (operator, second)]
        for _ in range(200):  # 10 s at most: until a part is out
            if await conn.fetchval("select count(*) from campaign_messages where parts_sent > 0"):
                break
            await asyncio.sleep(0.05)
        cancelled = await act(second, f"/operator/runs/{seeded.run_id}/cancel")
        answers = await asyncio.gather(*calls)
        after = await operator.process()

    assert cancelled.status_code == 200
    assert [a.status_code for a in answers] == [200, 200]
    assert after.status_code == 200
    assert after.json()["claimed"] == 0
    assert (await conn.fetchval("select status from campaign_runs")) == "cancelled"
    rows = await conn.fetch(
        """select id, status, error_message, parts_sent,
                  coalesce(jsonb_array_length(message_parts), 0) as parts
             from campaign_messages where run_id = $1""",
        seeded.run_id,
    )
    delivered = Counter(k.split(":")[0] for k in operator.stubs.send.delivered_keys())
    ended = Counter(r["status"] for r in rows)
    # Nothing pending or failed; both sent and skipped ones: the cancel came mid-run.
    assert set(ended) == {"sent", "skipped"}, ended
    for row in rows:  # sent in full, or skipped with nothing of it out: never half-sent
        if row["status"] == "sent":
            assert row["parts_sent"] == row["parts"] == delivered[str(row["id"])] >= 2
        else:
            assert (row["error_message"], row["parts_sent"]) == ("cancelled", 0)
            assert delivered[str(row["id"])] == 0
    assert operator.stubs.send.duplicate_keys == 0
    await assert_no_lease_left(conn)


async def wait_for_status(conn: asyncpg.Connection, status: str) -> None:
    for _ in range(200):  # 10 s at most
        if await conn.fetchval("select count(*) from campaign_messages where status = $1", status):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no message reached {status}")
