"""Who may see the console, over real HTTP: without OPERATOR_TOKEN nothing answers (404); HTTP
Basic with the token as password, or the sign-in form's cookie (HttpOnly, SameSite=Strict,
Path=/console, signed under the token); a wrong token and the CRON_SECRET are 401."""

from __future__ import annotations

import time

import asyncpg
import httpx

from app.console.session import SESSION_MAX_AGE_S, Signer
from app.sandbox.seed import seed_campaign
from tests.console.helpers import OPERATOR_TOKEN, Console, basic, csrf_of
from tests.service import Service
from tests.stubs import CRON_SECRET

PATHS = ("/console", "/console/part", "/console/sign-in")


async def test_without_an_operator_token_every_console_path_is_404(
    service: Service, conn: asyncpg.Connection
) -> None:
    seeded = await seed_campaign(conn, leads=1)
    assert service.settings.operator_token is None
    for path in PATHS:
        for headers in ({}, basic(OPERATOR_TOKEN), basic(CRON_SECRET)):
            response = await service.http.get(service.url + path, headers=headers)
            assert response.status_code == 404, path
    for path in ("/console/sign-in", f"/console/runs/{seeded.run_id}/pause", "/console/sign-out"):
        response = await service.http.post(service.url + path, data={"token": OPERATOR_TOKEN})
        assert response.status_code == 404, path
    assert await conn.fetchval("select status from campaign_runs") == "running"


async def test_http_basic_with_the_token_signs_in_a_wrong_one_and_the_cron_secret_do_not(
    console_service: Service,
) -> None:
    url, http = console_service.url, console_service.http
    for user in ("operator", ""):
        page = await http.get(url + "/console", headers=basic(OPERATOR_TOKEN, user))
        assert page.status_code == 200
        for section in ('id="queue"', 'id="sent-per-minute"', 'id="runs"', 'id="inboxes"'):
            assert section in page.text
        assert "cq_console" not in page.headers.get("set-cookie", "")
        part = await http.get(url + "/console/part", headers=basic(OPERATOR_TOKEN, user))
        assert part.status_code == 200
        assert 'id="runs"' in part.text
        assert "<html" not in part.text
    for password in ("not-the-operator-token", CRON_SECRET, ""):
        refused = await http.get(url + "/console", headers=basic(password))
        assert refused.status_code == 401, password
        assert refused.headers["www-authenticate"].startswith("Basic")
        assert 'id="runs"' not in refused.text
    bearer = await http.get(url + "/console", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
    assert (bearer.status_code, bearer.headers["location"]) == (303, "/console/sign-in")


async def test_not_signed_in_the_page_redirects_to_the_form_and_its_part_is_401(
    console_service: Service,
) -> None:
    url, http = console_service.url, console_service.http
    page = await http.get(url + "/console")
    assert (page.status_code, page.headers["location"]) == (303, "/console/sign-in")
    assert (await http.get(url + "/console/part")).status_code == 401
    form = await http.get(url + "/console/sign-in")
    assert form.status_code == 200
    assert '<form id="sign-in" method="post" action="/console/sign-in">' in form.text
    assert '<input name="token" type="password"' in form.text
    assert 'id="sign-in-error"' not in form.text


async def test_the_form_sets_a_strict_httponly_cookie_and_a_wrong_token_is_401(
    console_service: Service,
) -> None:
    url = console_service.url
    async with httpx.AsyncClient() as http:
        for wrong in ("not-the-operator-token", CRON_SECRET):
            refused = await http.post(url + "/console/sign-in", data={"token": wrong})
            assert refused.status_code == 401
            assert 'id="sign-in-error"' in refused.text
            assert "set-cookie" not in refused.headers
        signed = await http.post(url + "/console/sign-in", data={"token": OPERATOR_TOKEN})
        assert (signed.status_code, signed.headers["location"]) == (303, "/console")
        cookie = signed.headers["set-cookie"]
        assert cookie.startswith("cq_console=")
        flags = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite=strict", "path=/console"} <= flags
        assert "secure" not in flags  # plain http on loopback
        async with httpx.AsyncClient() as behind_a_proxy:
            proxied = await behind_a_proxy.post(
                url + "/console/sign-in",
                data={"token": OPERATOR_TOKEN},
                headers={"X-Forwarded-Proto": "https"},  # https to the proxy in front
            )
        assert "secure" in proxied.headers["set-cookie"].lower().split("; ")
        assert OPERATOR_TOKEN not in cookie
        page = await http.get(url + "/console")
        assert page.status_code == 200
        assert page.headers["cache-control"] == "no-store"
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]

        out = await http.post(url + "/console/sign-out", data={"csrf": csrf_of(page.text)})
        assert (out.status_code, out.headers["location"]) == (303, "/console/sign-in")
        assert (await http.get(url + "/console")).status_code == 303


async def test_a_session_ends_when_the_token_changes_or_it_grows_old(
    console: Console, console_service: Service
) -> None:
    url = console_service.url
    other_token = Signer.for_token("another-operator-token-0123456789").new_session()
    old = Signer.for_token(OPERATOR_TOKEN).new_session(time.time() - SESSION_MAX_AGE_S - 5)
    fresh = Signer.for_token(OPERATOR_TOKEN).new_session()
    issued, nonce, mac = fresh.split(".")
    for cookie in (other_token, old, f"{int(issued) + 1}.{nonce}.{mac}", "x", fresh + "x"):
        async with httpx.AsyncClient(cookies={"cq_console": cookie}) as http:
            page = await http.get(url + "/console")
            assert page.status_code == 303, cookie
    async with httpx.AsyncClient(cookies={"cq_console": fresh}) as http:
        assert (await http.get(url + "/console")).status_code == 200
