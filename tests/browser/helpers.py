"""What the browser tests share besides fixtures: the console's address, signing in."""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass

import pytest
from playwright.async_api import Page

# Every test here waits for one demo: it runs in one xdist worker (`--dist loadgroup`), and
# its first test's timeout covers the demo's start.
BROWSER_MARKS = [pytest.mark.xdist_group("browser"), pytest.mark.timeout(180)]


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
    token: str
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
