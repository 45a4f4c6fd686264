"""Who may call the functions, and migrations applied twice."""

from __future__ import annotations

import asyncpg
import pytest

from app.sandbox.database import create_database, drop_database
from app.sandbox.seed import seed_campaign
from app.store.migrations import apply_migrations, load_migrations

QUEUE_FUNCTIONS = [
    "operator_pause_campaign_run",
    "operator_resume_campaign_run",
    "cancel_campaign_run",
    "requeue_campaign_run_failures",
    "set_inbox_pacing",
    "clear_inbox_pacing",
    "operator_lift_inbox_brake",
    "operator_suppress_campaign_contact",
    "operator_unsuppress_campaign_contact",
    "get_and_lock_campaign_messages",
    "mark_old_campaign_messages_as_skipped",
    "get_lead_contexts",
    "start_campaign_message",
    "save_generated_message",
    "mark_message_part_sent",
    "fail_campaign_message",
    "skip_campaign_message",
    "release_campaign_messages",
    "renew_campaign_leases",
    "pause_campaign_run",
    "resume_campaign_run",
    "finalize_campaign_runs",
    "tidy_campaign_queue",
    "requeue_failed_campaign_messages",
    "log_campaign_steps",
    "record_provider_outage",
    "campaign_queue_effective_horizon",
    "resume_reconnected_campaign_runs",
    "take_inbox_slot",
    "campaign_queue_status",
    "campaign_console_sent_per_minute",
    "campaign_console_run_failures",
    "record_campaign_queue_call",
    "campaign_queue_next_start",
    "lift_inbox_brake",
    "suppress_campaign_contact",
    "unsuppress_campaign_contact",
]
INTERNAL_FUNCTIONS = [
    "cq_run_answer",
    "cq_skip_cancelled_message",
    "cq_inbox_overrides",
    "cq_masked_phone",
    "cq_contact_answer",
    "cq_contact_refusal",
    "cq_inbox_limits",
    "cq_inbox_holds_backlog",
    "cq_pick_due_messages",
    "cq_local_date",
    "cq_metric_number",
    "cq_failure_reason",
    "cq_valid_timezone",
    "cq_inbox_timezone",
    "cq_check_overrides",
    "cq_requested_leases",
    "cq_due_minute",
    "cq_count_kind",
    "cq_fold_message_counts",
    "cq_rebuild_message_counts",
    "cq_count_message_changes",
    "cq_count_message_update",
    "cq_forget_message_counts",
    "cq_status_retrying",
    "cq_status_page",
    "cq_status_page_of",
    "cq_status_counted",
    "cq_status_queue",
    "cq_status_circuit",
    "cq_status_last_call",
    "cq_status_eta_s",
    "cq_window_open",
    "cq_window_opening",
    "cq_open_horizon",
    "cq_horizon_since",
    "cq_note_window_change",
    "cq_brake_error",
    "cq_record_inbox_send",
    "cq_contact_phone",
    "cq_contact_stop_reason",
    "cq_status_skipped",
    "cq_warmup_cap",
    "cq_hourly_hold_until",
    "cq_inbox_hold",
    "cq_claim_text",
    "cq_claim_text_at_slot",
    "cq_forget_sent_texts",
    "cq_skip_late_in_lead_zones",
    "cq_stamp_override_hold",
    "cq_skip_cancelled_leftovers",
    "cq_requeue_failed",
]


@pytest.mark.parametrize("role", ["anon", "authenticated"])
async def test_only_service_role_can_claim(conn: asyncpg.Connection, role: str) -> None:
    await seed_campaign(conn, leads=1)
    async with conn.transaction():
        await conn.execute(f"set local role {role}")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetchval("select get_and_lock_campaign_messages(p_batch_size => 1)")
    async with conn.transaction():
        await conn.execute("set local role service_role")
        claimed = await conn.fetchval("select get_and_lock_campaign_messages(p_batch_size => 1)")
        assert len(claimed) == 1


async def test_every_queue_function_is_security_definer_and_service_role_only(
    conn: asyncpg.Connection,
) -> None:
    rows = await conn.fetch(
        """select p.proname, p.prosecdef, p.proconfig,
                  has_function_privilege('anon', p.oid, 'execute') as anon,
                  has_function_privilege('authenticated', p.oid, 'execute') as authenticated,
                  has_function_privilege('service_role', p.oid, 'execute') as service
             from pg_proc p join pg_namespace n on n.oid = p.pronamespace
            where n.nspname = 'public'
              and p.proname not in ('check_campaign_instance_status', 'log_campaign_step')"""
    )
    internal = [r for r in rows if r["proname"] in INTERNAL_FUNCTIONS]
    assert sorted(r["proname"] for r in internal) == sorted(INTERNAL_FUNCTIONS)
    for row in internal:  # only our functions call them, as their owner
        assert (row["anon"], row["authenticated"], row["service"]) == (False, False, False)
    rows = [r for r in rows if r["proname"] not in INTERNAL_FUNCTIONS]
    assert sorted(r["proname"] for r in rows) == sorted(QUEUE_FUNCTIONS)
    for row in rows:
        assert row["prosecdef"], row["proname"]
        assert row["proconfig"] == ["search_path=public"], row["proname"]
        assert (row["anon"], row["authenticated"], row["service"]) == (False, False, True), row[
            "proname"
        ]


async def test_migrations_applied_twice_change_nothing(pg_server_dsn: str) -> None:
    dsn = await create_database(pg_server_dsn, "cq_migrate_twice")
    try:
        first = await apply_migrations(dsn)
        assert first == [m.name for m in load_migrations()]
        snapshot = await _schema_snapshot(dsn)
        assert await apply_migrations(dsn) == []  # recorded: a no-op
        # Every file is idempotent on its own too: forget the ledger and apply all again.
        conn = await asyncpg.connect(dsn)
        await conn.execute("delete from campaign_queue_migrations")
        await conn.close()
        assert await apply_migrations(dsn) == first
        assert await _schema_snapshot(dsn) == snapshot
    finally:
        await drop_database(pg_server_dsn, "cq_migrate_twice")


async def test_an_existing_product_function_is_never_replaced(pg_server_dsn: str) -> None:
    dsn = await create_database(pg_server_dsn, "cq_product_fn")
    try:
        conn = await asyncpg.connect(dsn)
        await conn.execute(
            """create table inboxes (id uuid primary key, workspace_id uuid, name text,
                                     status text);
               create function check_campaign_instance_status(p_inbox_id uuid) returns jsonb
               language sql as $$ select '{"connected": true, "status": "product"}'::jsonb $$;
               create function get_and_lock_campaign_messages(p_batch_size integer)
               returns setof inboxes language sql as $$ select * from inboxes $$;"""
        )
        await conn.close()
        await apply_migrations(dsn)
        conn = await asyncpg.connect(dsn)
        try:
            body = await conn.fetchval(
                "select prosrc from pg_proc where proname = 'check_campaign_instance_status'"
            )
            assert "product" in body
            signatures = await conn.fetch(
                """select oid::regprocedure::text as s from pg_proc
                    where proname = 'get_and_lock_campaign_messages'"""
            )
            assert [r["s"] for r in signatures] == [
                "get_and_lock_campaign_messages(integer,timestamp with time zone,integer,text,uuid,"
                "real,real,integer,real,integer,integer,integer,boolean)"
            ]
        finally:
            await conn.close()
    finally:
        await drop_database(pg_server_dsn, "cq_product_fn")


async def _schema_snapshot(dsn: str) -> list[tuple[str, ...]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            """select 'fn', p.oid::regprocedure::text, md5(p.prosrc),
                      coalesce(array_to_string(p.proacl, ','), '')
                 from pg_proc p join pg_namespace n on n.oid = p.pronamespace
                where n.nspname = 'public'
               union all
               select 'idx', indexname, md5(indexdef), '' from pg_indexes
                where schemaname = 'public'
               union all
               select 'col', table_name || '.' || column_name, data_type,
                      coalesce(column_default, '')
                 from information_schema.columns where table_schema = 'public'
               order by 1, 2"""
        )
        return [tuple(r) for r in rows]
    finally:
        await conn.close()
