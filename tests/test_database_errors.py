"""DatabaseError: names the function, the error class and the SQLSTATE, never a value; and
says whether the error is about the data (fail that message) or the database (try later)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from app.sandbox.postgrest import create_postgrest_app
from app.sandbox.server import LoopbackServer
from app.store.postgres import PostgresRpc
from app.store.rpc import DatabaseError, Rpc, is_data_error
from app.store.supabase import SupabaseRpc

KEY = "test-service-role-key"
DEAD_DSN = "postgresql://postgres:secret-db-password@127.0.0.1:1/postgres"
NAME = "Maria Secreta da Silva"
PHONE = "+5511912345678"

FUNCTIONS = """
create function public.cq_echo_text(p_text text) returns text
  language sql as $$ select p_text $$;
create function public.cq_echo_int(p_n integer) returns integer
  language sql as $$ select p_n $$;
create function public.cq_as_uuid(p_text text) returns uuid
  language sql as $$ select p_text::uuid $$;
create table public.cq_names (name text primary key);
grant all on table public.cq_names to service_role;
create function public.cq_add_name(p_name text) returns text
  language sql as $$ insert into public.cq_names values (p_name) returning name $$;
create function public.cq_unavailable(p_text text) returns text language plpgsql as $$
begin
  raise exception 'cannot serve %', p_text using errcode = '57P03';
end $$;
"""


@pytest_asyncio.fixture
async def functions(conn: asyncpg.Connection) -> None:
    await conn.execute(FUNCTIONS)
    await conn.execute("insert into public.cq_names values ($1)", NAME)


@pytest.fixture(params=["postgres", "supabase"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def supabase_url(kind: str, db_dsn: str) -> Iterator[str | None]:
    if kind != "supabase":
        yield None
        return
    with LoopbackServer(create_postgrest_app(db_dsn, KEY), lifespan=True) as postgrest:
        yield postgrest.url


@pytest_asyncio.fixture
async def store_rpc(
    kind: str, db_dsn: str, supabase_url: str | None, functions: None
) -> AsyncIterator[Rpc]:
    rpc: Rpc
    if supabase_url is None:
        rpc = PostgresRpc(db_dsn, max_size=2)
    else:
        rpc = await SupabaseRpc.connect(supabase_url, KEY)
    yield rpc
    await rpc.close()


async def failure(rpc: Rpc, function: str, args: dict[str, Any]) -> DatabaseError:
    with pytest.raises(DatabaseError) as raised:
        await rpc.call(function, args)
    error = raised.value
    text = str(error)
    assert function in text
    for value in (NAME, "Maria", "Secreta", PHONE, PHONE[1:], "5678"):
        assert value not in text
    return error


@pytest.mark.parametrize(
    ("function", "args", "sqlstates"),
    [
        ("cq_echo_text", {"p_text": f"{NAME}\x00{PHONE}"}, {"22021", "22P05"}),  # a NUL
        ("cq_as_uuid", {"p_text": f"{NAME} {PHONE}"}, {"22P02"}),  # echoed by the server
        ("cq_add_name", {"p_name": NAME}, {"23505"}),  # unique violation, key in detail
        ("cq_echo_int", {"p_n": 2**31 + int(PHONE[1:])}, {"22000", "22003"}),
    ],
)
async def test_a_data_error_names_no_value_and_says_it_is_about_the_data(
    store_rpc: Rpc, function: str, args: dict[str, Any], sqlstates: set[str]
) -> None:
    error = await failure(store_rpc, function, args)
    assert error.data_error is True
    assert error.sqlstate in sqlstates
    assert f"SQLSTATE {error.sqlstate}" in str(error)


async def test_a_lone_surrogate_is_a_data_error(store_rpc: Rpc) -> None:
    error = await failure(store_rpc, "cq_echo_text", {"p_text": f"{NAME} \ud800 {PHONE}"})
    assert error.data_error is True


async def test_an_unavailable_database_is_not_a_data_error(store_rpc: Rpc) -> None:
    error = await failure(store_rpc, "cq_unavailable", {"p_text": NAME})
    assert error.data_error is False
    assert error.sqlstate == "57P03"
    assert "SQLSTATE 57P03" in str(error)


async def test_the_postgres_error_names_the_class(db_dsn: str, functions: None) -> None:
    rpc = PostgresRpc(db_dsn, max_size=1)
    try:
        error = await failure(rpc, "cq_as_uuid", {"p_text": NAME})
    finally:
        await rpc.close()
    assert str(error) == "cq_as_uuid failed: InvalidTextRepresentationError (SQLSTATE 22P02)"


async def test_an_unreachable_database_is_not_a_data_error() -> None:
    rpc = PostgresRpc(DEAD_DSN, max_size=1)
    with pytest.raises(DatabaseError) as raised:
        await rpc.call("cq_echo_text", {"p_text": NAME})
    assert raised.value.data_error is False
    assert "secret-db-password" not in str(raised.value)
    with LoopbackServer(create_postgrest_app(DEAD_DSN, KEY), lifespan=True) as postgrest:
        supabase = await SupabaseRpc.connect(postgrest.url, KEY)
        try:
            with pytest.raises(DatabaseError) as raised:
                await supabase.call("cq_echo_text", {"p_text": NAME})
        finally:
            await supabase.close()
    assert raised.value.data_error is False
    assert NAME not in str(raised.value)


@pytest.mark.parametrize(
    ("sqlstate", "data"),
    [
        ("22000", True),
        ("22P02", True),
        ("22021", True),
        ("23505", True),
        ("23503", True),
        ("54000", True),
        ("08006", False),
        ("57P03", False),
        ("40001", False),
        ("53300", False),
        ("42883", False),
        ("P0001", False),
        ("PGRST202", False),
        ("PGRST000", False),
        ("22", False),
        ("", False),
        (None, False),
    ],
)
def test_which_sqlstates_are_about_the_data(sqlstate: str | None, data: bool) -> None:
    assert is_data_error(sqlstate) is data


def test_a_database_error_is_not_about_the_data_unless_told() -> None:
    error = DatabaseError("claim failed")
    assert error.data_error is False
    assert error.sqlstate is None
    assert str(error) == "claim failed"
