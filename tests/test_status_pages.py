"""GET /status?limit= and `python -m app status --limit N`: the status's page of runs
(docs/architecture.md, "Status"), over real HTTP and a real subprocess."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg
import pytest

from app.sandbox.seed import seed_campaign
from tests.service import Service
from tests.test_status import get_status, run_cli


async def test_get_status_pages_its_runs(service: Service, conn: asyncpg.Connection) -> None:
    runs = [await seed_campaign(conn, leads=1) for _ in range(3)]

    page = (await get_status(service, "?limit=2")).json()
    whole = (await get_status(service)).json()  # the default: 50

    assert len(page["runs"]) == 2
    assert page["runs_total"] == whole["runs_total"] == 3
    assert {r["run_id"] for r in whole["runs"]} == {str(r.run_id) for r in runs}
    assert [r["run_id"] for r in page["runs"]] == [r["run_id"] for r in whole["runs"]][:2]
    assert page["queue"] == whole["queue"]  # every active run's messages, whatever the page
    assert len(page["inboxes"]) == 2  # those of the runs shown


@pytest.mark.parametrize("store_kind", ["postgres"])
@pytest.mark.parametrize(
    ("query", "kind"),
    [
        ("?limit=0", "greater_than_equal"),
        ("?limit=501", "less_than_equal"),
        ("?limit=many", "int_parsing"),
        ("?limit=", "int_parsing"),
    ],
)
async def test_a_limit_out_of_range_is_422_in_the_posts_shape(
    service: Service, query: str, kind: str
) -> None:
    response = await get_status(service, query)
    assert response.status_code == 422
    body = response.json()
    assert body["success"] is False
    [problem] = body["detail"]
    assert set(problem) == {"loc", "msg", "type"}
    assert (problem["loc"], problem["type"]) == (["query", "limit"], kind)


async def test_get_status_takes_an_offset_and_a_status_filter(
    service: Service, conn: asyncpg.Connection
) -> None:
    # Without ?offset= no run past the 500th could ever be read over HTTP; both were
    # silently ignored before (every page was the first, every filter "active").
    runs = [await seed_campaign(conn, leads=1) for _ in range(3)]
    await conn.execute(
        "update campaign_runs set status = 'completed' where id = $1", runs[0].run_id
    )
    whole = (await get_status(service)).json()

    rest = (await get_status(service, "?limit=1&offset=1")).json()
    ended = (await get_status(service, "?status=completed")).json()
    every = (await get_status(service, "?status=all")).json()

    assert whole["runs_total"] == rest["runs_total"] == 2
    assert [r["run_id"] for r in rest["runs"]] == [r["run_id"] for r in whole["runs"]][1:]
    assert [r["run_id"] for r in ended["runs"]] == [str(runs[0].run_id)]
    assert ended["runs_total"] == 1
    assert every["runs_total"] == 3


@pytest.mark.parametrize("store_kind", ["postgres"])
@pytest.mark.parametrize(
    ("query", "field"),
    [("?offset=-1", "offset"), ("?offset=x", "offset"), ("?status=bogus", "status")],
)
async def test_a_bad_offset_or_status_is_422_naming_it(
    service: Service, conn: asyncpg.Connection, query: str, field: str
) -> None:
    response = await get_status(service, query)
    assert response.status_code == 422
    [problem] = response.json()["detail"]
    assert problem["loc"] == ["query", field]


async def test_the_cli_shows_a_page_and_says_of_how_many(
    conn: asyncpg.Connection, db_dsn: str, tmp_path: Path
) -> None:
    for _ in range(3):
        await seed_campaign(conn, leads=1)
    env = {"DATABASE_URL": db_dsn}

    code, out, err = await run_cli(["status", "--limit", "2"], env, tmp_path)
    assert code == 0, err
    assert "RUNS (2 of 3, the most recently active; --limit N for more)" in out

    code, out, err = await run_cli(["status", "--limit", "1", "--json"], env, tmp_path)
    assert code == 0, err
    answer = json.loads(out)
    assert (len(answer["runs"]), answer["runs_total"]) == (1, 3)

    code, out, err = await run_cli(["status"], env, tmp_path)
    assert "RUNS (3)" in out


@pytest.mark.parametrize("limit", ["0", "501", "ten"])
async def test_the_cli_refuses_a_limit_out_of_range(tmp_path: Path, limit: str) -> None:
    code, out, err = await run_cli(["status", "--limit", limit], {}, tmp_path)
    assert (code, out) == (2, "")
    assert err == (
        "error: python -m app status: argument --limit: must be a whole number from 1 to 500,"
        f" not '{limit}'\n"
    )
