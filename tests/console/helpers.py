"""The console over real HTTP: the service on loopback with an OPERATOR_TOKEN, the embedded
Postgres, and a client signed in through the form (its cookie kept by httpx)."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass

import httpx

OPERATOR_TOKEN = "test-operator-token-0123456789"


def basic(password: str, user: str = "operator") -> dict[str, str]:
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


@dataclass
class Console:
    url: str
    http: httpx.AsyncClient  # signed in: it holds the session cookie

    async def page(self, query: str = "") -> str:
        response = await self.http.get(self.url + "/console" + query)
        assert response.status_code == 200, response.text
        return response.text

    async def csrf(self) -> str:
        return csrf_of(await self.page())

    async def post(
        self, path: str, fields: dict[str, str] | None = None, csrf: str | None = None
    ) -> httpx.Response:
        """A console form: its fields and the page's CSRF token (unless one is given)."""
        form = {"csrf": csrf if csrf is not None else await self.csrf(), **(fields or {})}
        return await self.http.post(self.url + path, data=form)

    async def act(self, path: str, fields: dict[str, str] | None = None) -> str:
        """Posts the form, follows the 303 back to /console, and answers #flash's text."""
        response = await self.post(path, fields)
        assert response.status_code == 303, response.text
        assert response.headers["location"].startswith("/console?")
        assert response.headers["location"].endswith("#flash")
        return flash_of(await self.page("?" + response.headers["location"].split("?")[1][:-6]))


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, "no CSRF token on the page"
    return match.group(1)


def flash_of(page: str) -> str:
    match = re.search(r'<p id="flash"[^>]*>([^<]*)</p>', page)
    assert match, "no #flash on the page"
    return html.unescape(match.group(1))


def run_rows(page: str) -> list[str]:
    return re.findall(r'<tr data-run-id="([^"]+)"', page)


def run_status(page: str, run_id: object) -> str:
    row = page.split(f'<tr data-run-id="{run_id}"', 1)[1].split("</tr>", 1)[0]
    match = re.search(r'data-field="status"[^>]*>([^<]+)<', row)
    assert match
    return match.group(1)
