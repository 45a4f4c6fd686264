"""What the browser tests share besides fixtures: the console's address, signing in."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg
import pytest
from playwright.async_api import Page

# open_page(**browser context options): a new page (the fixture of the same name)
OpenPage = Callable[..., Awaitable[Page]]

# Every test here waits for one demo: one xdist worker runs them all (tests/browser/
# scheduling.py), and the first one's timeout covers the demo's start.
BROWSER_MARKS = [pytest.mark.timeout(180)]


def chromium_executable() -> str:
    named = os.environ.get("CHROMIUM")
    found = named or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail(
            "no Chromium: set CHROMIUM or install one (apt-get install chromium); "
            "`python3 run.py test` leaves these tests out where there is none",
            pytrace=False,
        )
    return found


@dataclass(frozen=True)
class Console:
    url: str  # http://127.0.0.1:<port>/console
    token: str = field(repr=False)  # a secret: never in the test output
    dsn: str

    def at(self, path: str) -> str:
        """An absolute address on the console's server, e.g. at('/console/sign-in')."""
        origin = re.match(r"https?://[^/]+", self.url)
        assert origin is not None, self.url
        return origin.group(0) + path


async def sign_in(page: Page, console: Console) -> None:
    """Signs in through the form, as a person does, and lands on the console."""
    await page.goto(console.at("/console/sign-in"))
    await page.fill("form#sign-in input[name=token]", console.token)
    async with page.expect_navigation():
        await page.click("form#sign-in button[type=submit]")
    assert page.url.split("?")[0] == console.url, page.url


# --- the demo's database, read directly ------------------------------------------------------


async def run_statuses(db: asyncpg.Connection) -> dict[str, str]:
    return {
        str(r["id"]): r["status"] for r in await db.fetch("select id, status from campaign_runs")
    }


async def phone_numbers(db: asyncpg.Connection) -> list[str]:
    return [r["phone_number"] for r in await db.fetch("select phone_number from campaign_messages")]


async def failed_by_reason(db: asyncpg.Connection) -> dict[tuple[str, str], set[str]]:
    """(run id, reason group as the status groups failures) -> its failed messages' ids."""
    groups: dict[tuple[str, str], set[str]] = {}
    for row in await db.fetch(
        "select run_id, cq_failure_reason(error_message) as reason, id"
        "  from campaign_messages where status = 'failed'"
    ):
        groups.setdefault((str(row["run_id"]), row["reason"]), set()).add(str(row["id"]))
    return groups


async def message_statuses(db: asyncpg.Connection, run_id: str) -> dict[str, tuple[str, str]]:
    """A run's messages: id -> (status, error_message or '')."""
    rows = await db.fetch(
        "select id, status, coalesce(error_message, '') as error from campaign_messages"
        " where run_id = $1::uuid",
        run_id,
    )
    return {str(r["id"]): (r["status"], r["error"]) for r in rows}
