"""The demo runs end to end on loopback, and never calls a real endpoint by accident."""

from __future__ import annotations

import pytest

from app.sandbox.demo import run_demo


@pytest.mark.timeout(120)
async def test_the_demo_uses_the_stubs_even_with_real_keys_exported(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Keys exported for something else: without --real the demo must not use them. Should it
    # try, these point at a closed loopback port and the demo would fail.
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-not-for-the-demo")
    monkeypatch.setenv("OPENROUTER_BASE_URL", "http://127.0.0.1:9/api/v1")
    monkeypatch.setenv("SEND_URL", "http://127.0.0.1:9/send")
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", "not-for-the-demo")

    assert await run_demo(leads=4) == 0

    out = capsys.readouterr().out
    assert "OpenRouter (loopback stub), WhatsApp send (loopback stub)" in out
    assert '"processed": 4' in out
