"""The HTTP contract: the secret in either header, the body as its schema says, the OpenAPI
document (security schemes, documented answers, the requeue rule) and docs off by default.

The schema and the behaviour were checked against each other with Schemathesis (all checks)
too; the tests here pin what it found: `null` is 422 as `type: object` says, 5.0 is an
integer, `requeue_failed: true` needs `run_id` in the schema as in the code.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import httpx
import pytest

from app import auth
from app.api_models import ProcessQueueAnswer
from app.main import create_app
from app.models import ProcessQueueResult
from app.sandbox.seed import seed_campaign
from app.sandbox.server import LoopbackServer
from tests.service import Service
from tests.stubs import CRON_SECRET, SettingsFactory

OIDC_TOKEN = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImEifQ.eyJhdWQiOiJodHRwczovL3gifQ.c2lnbmF0dXJl"


async def statuses(conn: asyncpg.Connection) -> list[tuple[Any, ...]]:
    """Every message's state, and how many log rows: what a refused call must not change."""
    rows = await conn.fetch(
        """select id, status, lock_token, locked_at, retry_count, updated_at
           from campaign_messages order by id"""
    )
    logs = await conn.fetchval("select count(*) from campaign_logs")
    return [tuple(r.values()) for r in rows] + [("logs", logs)]


async def post(service: Service, headers: dict[str, str], **kwargs: Any) -> httpx.Response:
    return await service.http.post(
        service.url + "/process-queue", headers=headers, timeout=60, **kwargs
    )


# --- authentication -------------------------------------------------------------------


PASSING = {
    "bearer": {"Authorization": f"Bearer {CRON_SECRET}"},
    "bearer, lowercase": {"authorization": f"bearer {CRON_SECRET}"},
    "x-cron-secret": {"X-Cron-Secret": CRON_SECRET},
    # Behind Cloud Run IAM: Authorization carries Google's OIDC token.
    "oidc and x-cron-secret": {
        "Authorization": f"Bearer {OIDC_TOKEN}",
        "X-Cron-Secret": CRON_SECRET,
    },
    "bearer, x-cron-secret wrong": {
        "Authorization": f"Bearer {CRON_SECRET}",
        "X-Cron-Secret": "not-the-secret",
    },
}


async def test_the_secret_passes_in_either_header(
    service: Service, conn: asyncpg.Connection
) -> None:
    for name, headers in PASSING.items():
        await seed_campaign(conn, leads=1)

        response = await post(service, headers)

        assert response.status_code == 200, (name, response.text)
        assert response.json()["processed"] == 1, name


WRONG = [
    {},
    {"Authorization": "Bearer not-the-secret-at-all"},
    {"Authorization": f"Bearer {OIDC_TOKEN}"},
    {"Authorization": f"Basic {CRON_SECRET}"},
    {"Authorization": CRON_SECRET},
    {"X-Cron-Secret": "not-the-secret-at-all"},
    {"X-Cron-Secret": CRON_SECRET + "x"},
    {"X-Cron-Secret": CRON_SECRET[:-1]},
    {"Authorization": f"Bearer {OIDC_TOKEN}", "X-Cron-Secret": "not-the-secret-at-all"},
    {"Authorization": f"Bearer {CRON_SECRET[:-1]}", "X-Cron-Secret": ""},
]


async def test_a_missing_or_wrong_secret_is_401_and_nothing_changes(
    service: Service, conn: asyncpg.Connection
) -> None:
    await seed_campaign(conn, leads=2)
    before = await statuses(conn)

    for headers in WRONG:
        response = await post(service, headers, json={"batch_size": 1})
        assert response.status_code == 401, headers
        assert response.json() == {"success": False, "error": "unauthorized"}
        assert response.headers["www-authenticate"] == "Bearer"

    assert await statuses(conn) == before
    assert service.stubs.openrouter.requests == 0
    assert service.stubs.send.deliveries == []


@pytest.mark.parametrize("store_kind", ["postgres"])
async def test_a_401_is_logged_with_the_callers_address_and_never_the_secret(
    service: Service, capfd: pytest.CaptureFixture[str]
) -> None:
    # A curl pasted where $CRON_SECRET is unset sends `Authorization: Bearer` and nothing more.
    calls = [*WRONG, {"Authorization": "Bearer"}]
    capfd.readouterr()
    for headers in calls:
        assert (await post(service, headers)).status_code == 401
    ours = [
        json.loads(line)
        for line in capfd.readouterr().err.splitlines()
        if line.startswith("{") and "unauthorized" in line
    ]

    assert {line["severity"] for line in ours} == {"WARNING"}
    prefix = "unauthorized: POST /process-queue from 127.0.0.1: "
    not_bearer = "Authorization is not `Bearer <CRON_SECRET>`"
    assert [line["message"].removeprefix(prefix) for line in ours] == [
        "no secret",
        *["wrong secret"] * 2,
        *[not_bearer] * 2,
        *["wrong secret"] * 5,
        "empty secret",
    ]
    text = json.dumps(ours)
    for headers in calls:
        for value in headers.values():
            assert not value or value.split()[-1] not in text or value == "Bearer"
    assert CRON_SECRET[:8] not in text


def test_every_candidate_is_compared_in_constant_time(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[bytes, bytes]] = []

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return a == b

    monkeypatch.setattr("app.auth.hmac.compare_digest", spy)
    settings = make_settings()
    secret = CRON_SECRET.encode()

    assert auth.secret_matches(settings, CRON_SECRET, "wrong") is True
    assert auth.secret_matches(settings, "wrong", CRON_SECRET) is True
    assert auth.secret_matches(settings, "wrong", None) is False
    # Both candidates are compared even when the first one matched.
    assert compared == [
        (secret, secret),
        (b"wrong", secret),
        (b"wrong", secret),
        (secret, secret),
        (b"wrong", secret),
    ]
    unset = settings.model_copy(update={"cron_secret": None})
    assert auth.secret_matches(unset, CRON_SECRET) is False


# --- the body, as the schema says -------------------------------------------------------


REFUSED_BODIES = [
    ("null", ["body"], "model_type"),
    ("[]", ["body"], "model_type"),
    ('"batch_size"', ["body"], "model_type"),
    ("5", ["body"], "model_type"),
    ('{"batch_size": 5.5}', ["body", "batch_size"], "int_type"),
    ('{"batch_size": "5"}', ["body", "batch_size"], "int_type"),
    ('{"batch_size": true}', ["body", "batch_size"], "int_type"),
    ('{"batch_size": 101.0}', ["body", "batch_size"], "less_than_equal"),
    ('{"concurrency": 0}', ["body", "concurrency"], "greater_than_equal"),
    ('{"max_messages": 1e300}', ["body", "max_messages"], "less_than_equal"),
    ('{"time_budget_s": "10"}', ["body", "time_budget_s"], "float_type"),
    ('{"time_budget_s": 0.5}', ["body", "time_budget_s"], "greater_than_equal"),
    ('{"run_id": "not-a-uuid"}', ["body", "run_id"], "uuid_parsing"),
    ('{"requeue_failed": "yes"}', ["body", "requeue_failed"], "bool_type"),
    ('{"requeue_failed": true}', ["body"], "requeue_needs_run_id"),
    ('{"requeue_failed": true, "run_id": null}', ["body"], "requeue_needs_run_id"),
    ('{"batch": 5}', ["body", "batch"], "extra_forbidden"),
]


@pytest.mark.parametrize("store_kind", ["postgres"])
async def test_a_body_the_schema_forbids_is_422_naming_where_and_nothing_changes(
    service: Service, conn: asyncpg.Connection
) -> None:
    await seed_campaign(conn, leads=1)
    before = await statuses(conn)

    for body, loc, kind in REFUSED_BODIES:
        response = await post(
            service,
            {"Authorization": f"Bearer {CRON_SECRET}", "Content-Type": "application/json"},
            content=body,
        )

        assert response.status_code == 422, body
        answer = response.json()
        assert answer["success"] is False
        [problem] = answer["detail"]
        assert (problem["loc"], problem["type"]) == (loc, kind), body

    assert await statuses(conn) == before


@pytest.mark.parametrize("store_kind", ["postgres"])
async def test_an_empty_body_or_an_empty_object_takes_the_defaults(
    service: Service, conn: asyncpg.Connection
) -> None:
    for body in [None, "", "{}", "  \n", '{"requeue_failed": false}', '{"run_id": null}']:
        await seed_campaign(conn, leads=2)
        headers = {"Authorization": f"Bearer {CRON_SECRET}"}
        if body is not None:
            headers["Content-Type"] = "application/json"

        response = await post(service, headers, content=body)

        assert response.status_code == 200, (body, response.text)
        assert response.json()["processed"] == 2, body


@pytest.mark.parametrize("store_kind", ["postgres"])
async def test_integral_numbers_are_integers(service: Service, conn: asyncpg.Connection) -> None:
    await seed_campaign(conn, leads=4)

    response = await service.process(
        {"batch_size": 2.0, "concurrency": 1.0, "max_messages": 3.0, "time_budget_s": 30}
    )

    assert response.status_code == 200, response.text
    assert (response.json()["claimed"], response.json()["processed"]) == (3, 3)


@pytest.mark.parametrize("store_kind", ["postgres"])
async def test_requeue_failed_with_its_run(service: Service, conn: asyncpg.Connection) -> None:
    seeded = await seed_campaign(conn, leads=2)
    other = await seed_campaign(conn, leads=1)
    await conn.execute(
        "update campaign_messages set status = 'failed' where run_id = $1", seeded.run_id
    )

    response = await service.process({"run_id": str(seeded.run_id), "requeue_failed": True})

    assert response.status_code == 200, response.text
    assert response.json()["processed"] == 2
    pending = await conn.fetchval(
        "select count(*) from campaign_messages where run_id = $1 and status = 'pending'",
        other.run_id,
    )
    assert pending == 1


async def test_healthz_answers_its_documented_shape(service: Service) -> None:
    response = await service.http.get(service.url + "/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


# --- the OpenAPI document ---------------------------------------------------------------


@pytest.fixture
def openapi(make_settings: SettingsFactory) -> dict[str, Any]:
    document: dict[str, Any] = create_app(make_settings()).openapi()
    return document


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    resolved: dict[str, Any] = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return resolved


def answer_schema(document: dict[str, Any], path: str, method: str, status: str) -> dict[str, Any]:
    response = document["paths"][path][method]["responses"][status]
    return resolve(document, response["content"]["application/json"]["schema"])


def test_the_document_says_what_the_service_does(openapi: dict[str, Any]) -> None:
    info = openapi["info"]
    assert "WhatsApp" in info["description"]
    assert "X-Cron-Secret" in info["description"]
    assert info["version"]
    operation = openapi["paths"]["/process-queue"]["post"]
    assert operation["operationId"] == "process_queue"
    assert operation["summary"]
    # No docs routes in it; /status is documented with the same security as /process-queue.
    operator = {f"/operator/runs/{{run_id}}/{a}" for a in ("pause", "resume", "cancel", "requeue")}
    operator.add("/operator/inboxes/{inbox_id}/pacing")
    operator |= {"/operator/inboxes/{inbox_id}/lift-brake", "/operator/contacts/suppress"}
    operator.add("/operator/contacts/unsuppress")
    assert set(openapi["paths"]) == {"/process-queue", "/healthz", "/status", "/metrics", *operator}
    status = openapi["paths"]["/status"]["get"]
    assert status["security"] == operation["security"]
    assert {"200", "401", "422", "503"} <= set(status["responses"])
    # The operators' actions take the OPERATOR_TOKEN only, never the CRON_SECRET.
    for path in operator:
        for action in openapi["paths"][path].values():
            assert action["security"] == [{"OperatorTokenBearer": []}], path
            assert {"200", "401", "403", "404", "409", "422", "503"} <= set(action["responses"])


def test_both_ways_to_send_the_secret_are_security_schemes(openapi: dict[str, Any]) -> None:
    schemes = openapi["components"]["securitySchemes"]
    assert schemes["CronSecretBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["CronSecretBearer"]["description"],
    }
    header = schemes["CronSecretHeader"]
    assert (header["type"], header["in"], header["name"]) == ("apiKey", "header", "X-Cron-Secret")
    # Alternatives: either one is enough.
    assert openapi["paths"]["/process-queue"]["post"]["security"] == [
        {"CronSecretBearer": []},
        {"CronSecretHeader": []},
    ]
    assert "security" not in openapi["paths"]["/healthz"]["get"]


def test_every_answer_of_process_queue_is_documented_with_its_shape(
    openapi: dict[str, Any],
) -> None:
    responses = openapi["paths"]["/process-queue"]["post"]["responses"]
    assert set(responses) == {"200", "401", "422", "500", "502", "503"}
    for status, response in responses.items():
        assert response["description"], status

    counts = answer_schema(openapi, "/process-queue", "post", "200")
    assert answer_schema(openapi, "/process-queue", "post", "502") == counts
    assert set(counts["properties"]) == set(ProcessQueueResult.model_fields)
    for name, field in counts["properties"].items():
        assert field.get("description"), name
    assert counts["properties"]["circuit_open"]["anyOf"] == [{"type": "string"}, {"type": "null"}]

    for status in ("401", "500", "503"):
        error = answer_schema(openapi, "/process-queue", "post", status)
        assert set(error["required"]) == {"success", "error"}
        assert error["properties"]["success"]["const"] is False
    assert "WWW-Authenticate" in responses["401"]["headers"]

    invalid = answer_schema(openapi, "/process-queue", "post", "422")
    assert set(invalid["required"]) == {"success", "detail"}
    problem = resolve(openapi, invalid["properties"]["detail"]["items"])
    assert set(problem["required"]) == {"loc", "msg", "type"}


def test_the_body_schema_says_what_the_code_accepts(openapi: dict[str, Any]) -> None:
    request_body = openapi["paths"]["/process-queue"]["post"]["requestBody"]
    assert request_body["required"] is False  # an empty body works
    body = request_body["content"]["application/json"]["schema"]
    assert body["type"] == "object"  # so `null` is not a valid body: 422
    assert body["additionalProperties"] is False
    fields = body["properties"]
    assert set(fields) == {
        "batch_size",
        "concurrency",
        "max_messages",
        "time_budget_s",
        "run_id",
        "requeue_failed",
    }
    for name, field in fields.items():
        assert field.get("description"), name
    bounds = {
        "batch_size": (1, 100),
        "concurrency": (1, 50),
        "max_messages": (1, 10000),
    }
    for name, (low, high) in bounds.items():
        [number, null] = fields[name]["anyOf"]
        assert number == {"type": "integer", "minimum": low, "maximum": high}  # 5.0 included
        assert null == {"type": "null"}
    assert fields["time_budget_s"]["anyOf"][0] == {"type": "number", "minimum": 1, "maximum": 3600}
    assert fields["requeue_failed"]["type"] == "boolean"
    # requeue_failed: true needs a run_id that is a uuid (not null).
    assert body["if"] == {
        "properties": {"requeue_failed": {"const": True}},
        "required": ["requeue_failed"],
    }
    assert body["then"] == {
        "properties": {"run_id": {"type": "string", "format": "uuid"}},
        "required": ["run_id"],
    }


def test_healthz_is_typed(openapi: dict[str, Any]) -> None:
    ok = answer_schema(openapi, "/healthz", "get", "200")
    down = answer_schema(openapi, "/healthz", "get", "503")
    assert ok["properties"]["status"]["const"] == "ok"
    assert down["properties"]["status"]["const"] == "unavailable"
    assert down["properties"]["database"]["const"] == "unreachable"


def test_the_documented_answer_is_the_processors_result() -> None:
    assert set(ProcessQueueAnswer.model_fields) == set(ProcessQueueResult.model_fields)
    result = ProcessQueueResult(claimed=3, processed=2, released=1, circuit_open="HTTP 402")
    assert ProcessQueueAnswer.model_validate(result.model_dump()).model_dump() == (
        result.model_dump()
    )


# --- the docs routes ------------------------------------------------------------------

DOCS = ["/docs", "/redoc", "/openapi.json"]


async def test_the_docs_are_off_by_default(make_settings: SettingsFactory) -> None:
    assert make_settings().docs_enabled is False
    with LoopbackServer(create_app(make_settings()), lifespan=True) as server:
        async with httpx.AsyncClient() as http:
            for path in DOCS:
                assert (await http.get(server.url + path)).status_code == 404, path


async def test_docs_enabled_serves_them(make_settings: SettingsFactory) -> None:
    settings = make_settings(docs_enabled=True)
    with LoopbackServer(create_app(settings), lifespan=True) as server:
        async with httpx.AsyncClient() as http:
            pages = {path: await http.get(server.url + path) for path in DOCS}
    assert all(page.status_code == 200 for page in pages.values())
    assert pages["/openapi.json"].json()["paths"]["/process-queue"]["post"]["security"]
    assert "/openapi.json" in pages["/docs"].text
    assert "/openapi.json" in pages["/redoc"].text


def test_docs_enabled_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.settings import Settings

    monkeypatch.setenv("DOCS_ENABLED", "true")
    values = {
        "database_url": "postgresql://u@127.0.0.1:1/d",
        "openrouter_api_key": "k",
        "send_url": "http://127.0.0.1:1/send",
        "supabase_service_role_key": "k",
        "cron_secret": CRON_SECRET,
    }
    assert Settings(**values).docs_enabled is True  # type: ignore[arg-type]
    monkeypatch.delenv("DOCS_ENABLED")
    assert Settings(**values).docs_enabled is False  # type: ignore[arg-type]


def test_the_body_model_is_still_importable_from_app_main() -> None:
    from app import api_models, main

    assert main.ProcessQueueBody is api_models.ProcessQueueBody
