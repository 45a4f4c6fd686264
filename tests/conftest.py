"""Shared fixtures: one Postgres per test session, a fresh database per test.

Isolation is cheap: sql/ is applied once to a template database, and each test gets
`create database ... template` of it (a file copy), dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
import pytest_asyncio

from app.sandbox.database import (
    PostgresServer,
    create_database,
    create_migrated_database,
    drop_database,
    start_postgres,
)
from app.store.postgres import PostgresRpc, init_connection


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    server = start_postgres()
    yield server
    server.stop()


@pytest_asyncio.fixture(scope="session")
async def template_db(pg_server: PostgresServer) -> AsyncIterator[str]:
    name = f"cq_template_{os.getpid()}"
    await create_migrated_database(pg_server.dsn, name)
    yield name
    await drop_database(pg_server.dsn, name)


@pytest_asyncio.fixture
async def db_dsn(pg_server: PostgresServer, template_db: str) -> AsyncIterator[str]:
    name = f"cq_test_{uuid.uuid4().hex[:12]}"
    dsn = await create_database(pg_server.dsn, name, template=template_db)
    yield dsn
    await drop_database(pg_server.dsn, name)


@pytest_asyncio.fixture
async def conn(db_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(db_dsn)
    await init_connection(connection)
    yield connection
    await connection.close()


@pytest_asyncio.fixture
async def rpc(db_dsn: str) -> AsyncIterator[PostgresRpc]:
    connector = PostgresRpc(db_dsn, max_size=8)
    yield connector
    await connector.close()


@pytest.fixture(scope="session")
def pg_server_dsn(pg_server: PostgresServer) -> str:
    return pg_server.dsn


pytest_plugins = ["tests.stubs", "tests.service"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--long", action="store_true", default=False, help="run the chaos suite at its long size"
    )
