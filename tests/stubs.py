"""Fixtures that run the loopback stubs and settings that point at them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from app.sandbox.server import LoopbackServer
from app.sandbox.stubs import OpenRouterStub, SendStub, stub_settings_env
from app.settings import Settings

CRON_SECRET = "test-cron-secret-0123456789"


@dataclass
class Stubs:
    openrouter: OpenRouterStub
    openrouter_url: str
    send: SendStub
    send_url: str

    def env(self) -> dict[str, str]:
        return stub_settings_env(self.openrouter, self.openrouter_url, self.send, self.send_url)


@pytest.fixture(scope="session")
def running_stubs() -> Iterator[Stubs]:
    openrouter, send = OpenRouterStub(), SendStub()
    with LoopbackServer(openrouter.app) as o, LoopbackServer(send.app) as s:
        yield Stubs(openrouter, o.url, send, s.url)


@pytest.fixture
def stubs(running_stubs: Stubs) -> Stubs:
    """The session's stub servers, reset: no latency, no faults, nothing seen."""
    running_stubs.openrouter.reset()
    running_stubs.send.reset()
    return running_stubs


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def make_settings(stubs: Stubs) -> SettingsFactory:
    """Settings aimed at the stubs, with timeouts and backoff small enough for a fast suite."""

    def factory(**overrides: Any) -> Settings:
        values: dict[str, Any] = {k.lower(): v for k, v in stubs.env().items()}
        values.update(
            database_url="postgresql://unused@127.0.0.1:1/unused",
            cron_secret=CRON_SECRET,
            generate_timeout_s=2.0,
            split_timeout_s=2.0,
            send_timeout_s=2.0,
            retry_base_s=0.01,
            retry_max_wait_s=1.0,
            # Pacing off unless a test turns it on: most tests send many messages per inbox.
            inbox_min_gap_s=0,
            inbox_max_gap_s=0,
            inbox_daily_cap=0,
        )
        values.update(overrides)
        return Settings.model_validate(values)  # from these values only, not the environment

    return factory
