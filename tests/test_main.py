"""The service's edges: database outage, logs, start-up without settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import httpx
import pytest

from app.main import create_app
from app.sandbox.postgrest import create_postgrest_app
from app.sandbox.seed import seed_campaign
from app.sandbox.server import LoopbackServer
from tests.service import SUPABASE_KEY, Service
from tests.stubs import CRON_SECRET, SettingsFactory

DEAD_DSN = "postgresql://postgres:secret-db-password@127.0.0.1:1/postgres"


@pytest.mark.parametrize("store_kind", ["postgres", "supabase"])
async def test_a_database_outage_is_503_with_a_json_error(
    make_settings: SettingsFactory, store_kind: str
) -> None:
    if store_kind == "postgres":
        settings = make_settings(database_url=DEAD_DSN)
        postgrest = None
    else:
        postgrest = LoopbackServer(create_postgrest_app(DEAD_DSN, SUPABASE_KEY), lifespan=True)
        settings = make_settings(
            database_url=None,
            supabase_url=postgrest.start(),
            supabase_service_role_key=SUPABASE_KEY,
        )
    try:
        with LoopbackServer(create_app(settings), lifespan=True) as server:
            async with httpx.AsyncClient() as http:
                response = await http.post(
                    server.url + "/process-queue",
                    headers={"Authorization": f"Bearer {CRON_SECRET}"},
                )
                health = await http.get(server.url + "/healthz")
    finally:
        if postgrest is not None:
            postgrest.stop()
    assert response.status_code == 503
    assert response.json() == {"success": False, "error": "database unavailable"}
    assert health.status_code == 503


async def test_logs_hold_no_secret_and_no_full_phone_number(
    service: Service, conn: asyncpg.Connection, capfd: pytest.CaptureFixture[str]
) -> None:
    await seed_campaign(conn, leads=4, split_messages=True, min_chars_to_split=50)
    await seed_campaign(conn, leads=1, inbox_status="disconnected")
    phones = [
        r["phone_number"] for r in await conn.fetch("select phone_number from campaign_messages")
    ]
    from app.sandbox.stubs import Fault

    service.stubs.send.faults.ratios = {Fault.SERVER_ERROR: 0.3}
    response = await service.process()
    assert response.status_code == 200

    output = "".join(capfd.readouterr())
    assert '"severity"' in output  # the service did log
    settings = service.settings
    secrets = [CRON_SECRET, service.stubs.openrouter.api_key, service.stubs.send.service_role_key]
    if settings.database_url is not None:
        secrets.append(settings.database_url.get_secret_value())
    for secret in secrets:
        assert secret not in output
    for phone in phones:
        assert phone not in output
        assert phone.lstrip("+") not in output


def test_start_up_without_settings_names_what_is_missing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    result = subprocess.run(
        [sys.executable, "-m", "app", "serve"],
        cwd=Path(__file__).resolve().parent.parent,
        env=env | {"PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    for name in ("DATABASE_URL", "OPENROUTER_API_KEY", "CRON_SECRET", "SEND_URL"):
        assert name in lines[0]
