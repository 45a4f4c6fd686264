"""Our own tables are never readable through the anon or authenticated keys.

Supabase grants every new table in `public` to anon and authenticated by default (its default
privileges), so a table of ours without row-level security and a revoke would be readable and
writable with the anon key through PostgREST. The database here is given the same default
privileges before the migrations run.
"""

from __future__ import annotations

import uuid

import asyncpg

from app.sandbox.database import create_database, drop_database
from app.store.migrations import apply_migrations

# The product's tables are the product's business; these are the ones the migrations create.
PRODUCT_TABLES = {
    "campaign_configs",
    "campaign_runs",
    "campaign_messages",
    "campaign_logs",
    "leads",
    "inboxes",
    "conversations",
    "ai_agents",
    "ai_message_splitter_config",
}


async def test_every_table_of_ours_has_row_level_security_and_no_grant_to_the_api_roles(
    pg_server_dsn: str,
) -> None:
    name = f"cq_own_tables_{uuid.uuid4().hex[:8]}"
    dsn = await create_database(pg_server_dsn, name)
    try:
        conn = await asyncpg.connect(dsn)
        try:
            for role in ("anon", "authenticated", "service_role"):
                await conn.execute(
                    f"do $$ begin create role {role} nologin; "
                    "exception when duplicate_object then null; end $$"
                )
            await conn.execute(
                "alter default privileges in schema public "
                "grant all on tables to anon, authenticated, service_role"
            )
        finally:
            await conn.close()
        await apply_migrations(dsn)
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch(
                """select c.relname::text as name, c.relrowsecurity as rls,
                          has_table_privilege('anon', c.oid, 'select') as anon_reads,
                          has_table_privilege('authenticated', c.oid, 'insert')
                            as authenticated_writes
                     from pg_class c join pg_namespace n on n.oid = c.relnamespace
                    where n.nspname = 'public' and c.relkind = 'r'"""
            )
        finally:
            await conn.close()
    finally:
        await drop_database(pg_server_dsn, name)
    ours = [r for r in rows if r["name"] not in PRODUCT_TABLES]
    assert "campaign_queue_migrations" in {r["name"] for r in ours}
    exposed = [
        r["name"] for r in ours if not r["rls"] or r["anon_reads"] or r["authenticated_writes"]
    ]
    assert exposed == []
