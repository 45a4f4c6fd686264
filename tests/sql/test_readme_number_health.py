"""The SQL the README's "Number health" section tells an operator to run runs, in order, on a
database with a campaign, and answers what the README says it answers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import asyncpg

from app.sandbox.seed import seed_campaign

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def number_health_sql() -> list[str]:
    start = README.index("\n## Number health")
    section = README[start : README.index("\n## ", start + 1)]
    return re.findall(r"```sql\n(.*?)```", section, re.S)


def statements(block: str) -> list[tuple[str, str | None]]:
    """Each statement of a block, with the JSON answer the comment after it shows (or None)."""
    found: list[tuple[str, str | None]] = []
    for chunk in block.split(";"):
        lines = [line for line in chunk.strip().splitlines() if line.strip()]
        if found and lines and lines[0].startswith("-- {"):
            found[-1] = (found[-1][0], lines[0][3:])
        code = "\n".join(line for line in lines if not line.lstrip().startswith("--"))
        if code.strip():
            found.append((code, None))
    return found


def is_like(answer: object, shown: object) -> bool:
    """An answer as the README shows it: "..." stands for any value."""
    if shown == "...":
        return True
    if isinstance(shown, dict):
        return (
            isinstance(answer, dict)
            and answer.keys() == shown.keys()
            and all(is_like(answer[k], v) for k, v in shown.items())
        )
    return answer == shown


async def test_the_operators_sql_runs_and_answers_as_shown(conn: asyncpg.Connection) -> None:
    seeded = await seed_campaign(conn, leads=1)
    await conn.execute(
        """insert into campaign_inbox_pacing_state (inbox_id, brake_until, brake_reason)
           values ($1, now() + '1 hour'::interval, 'failed sends')""",
        seeded.inbox_id,
    )
    values = {
        "<inbox uuid>": seeded.inbox_id,
        "<workspace uuid>": seeded.workspace_id,
        "<run uuid>": seeded.run_id,
        "<hash>": "0" * 64,
    }
    blocks = number_health_sql()
    assert len(blocks) >= 8
    for block in blocks:
        assert "\n#" not in block, "a block runs into the prose after it (a fence left open?)"
        for code, shown in statements(block):
            for placeholder, value in values.items():
                code = code.replace(placeholder, str(value))
            answer = await conn.fetchval(code) if code.lstrip().startswith("select") else None
            if not code.lstrip().startswith("select"):
                await conn.execute(code)
            if shown is not None:
                got = json.loads(answer) if isinstance(answer, str) else answer
                assert is_like(got, json.loads(shown)), (code, answer)
