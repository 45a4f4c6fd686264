"""The console's reads, one round trip each: campaign_queue_status for the page of runs the
listing asks for, the sends per minute of the last hour, and the shown runs' failed messages
by reason group (sql/055_console.sql)."""

from __future__ import annotations

from typing import Any

from app.console.view import PAGE_SIZE, ConsoleView, Listing, build_view
from app.settings import Settings
from app.store.rpc import Rpc, answer_object
from app.store.store import Pacing


async def load_view(rpc: Rpc, settings: Settings, listing: Listing) -> ConsoleView:
    pacing = Pacing.from_settings(settings)
    args: dict[str, Any] = {
        "p_run_id": None,
        **pacing.args(),
        "p_inbox_timezone": pacing.timezone,
        "p_limit": PAGE_SIZE,
        "p_offset": listing.offset,
        "p_status": listing.status,
    }
    status = answer_object("campaign_queue_status", await rpc.call("campaign_queue_status", args))
    sent = answer_object(
        "campaign_console_sent_per_minute",
        await rpc.call("campaign_console_sent_per_minute", {}),
    )
    run_ids = [str(r["run_id"]) for r in status.get("runs") or [] if isinstance(r, dict)]
    failures = answer_object(
        "campaign_console_run_failures",
        await rpc.call("campaign_console_run_failures", {"p_run_ids": run_ids}),
    )
    return build_view(status, sent, failures, listing)
