"""The deploy files as their platforms read them, and each scheduler's call made for real.

No Docker engine, gcloud, flyctl or Supabase runs here: cron.yaml is read as YAML (a gcloud
flags file), fly.toml with tomllib, the Dockerfile and .dockerignore as text; the pg_cron
template runs in Postgres against stand-ins for pg_cron, pg_net and Vault; the Fly trigger
and the pg_net call it schedules are sent to the real service on loopback.
"""

from __future__ import annotations

import asyncio
import fnmatch
import http.server
import json
import re
import shutil
import threading
import time
import tomllib
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
import yaml

from app.sandbox.seed import seed_campaign
from app.sandbox.stubs import Latency
from app.store.postgres import PostgresRpc
from deploy import fly_trigger, to_supabase_migrations
from tests.processing.invariants import assert_no_lease_left
from tests.service import Service
from tests.stubs import CRON_SECRET

ROOT = Path(__file__).resolve().parent.parent


def _minutes(field: str) -> set[int]:
    """The minutes a cron minute field matches: *, */n, a-b, a,b,c."""
    minutes: set[int] = set()
    for part in field.split(","):
        base, _, step = part.partition("/")
        first, last = (
            (0, 59)
            if base == "*"
            else (tuple(int(x) for x in base.split("-")) if "-" in base else (int(base), int(base)))
        )
        minutes.update(range(first, last + 1, int(step) if step else 1))
    return minutes


def _every_minute(schedule: str) -> bool:
    fields = schedule.split()
    return len(fields) == 5 and _minutes(fields[0]) == set(range(60)) and fields[1:] == ["*"] * 4


def _seconds(value: str) -> float:
    found = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", value)
    assert found, value
    return float(found.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[found.group(2)]


def _code_lines(text: str, comment: str = "#") -> str:
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith(comment))


# --- Cloud Scheduler: cron.yaml --------------------------------------------------------------


def test_cron_calls_post_process_queue_every_minute() -> None:
    flags = yaml.safe_load((ROOT / "cron.yaml").read_text())
    assert all(key.startswith("--") for key in flags)  # a gcloud --flags-file
    assert _every_minute(flags["--schedule"])
    assert flags["--http-method"] == "POST"
    assert urlsplit(flags["--uri"]).path == "/process-queue"
    assert json.loads(flags["--message-body"]) == {}
    assert flags["--max-retry-attempts"] == 0
    # Longer than a call (budget 50 s + one message), shorter than Cloud Run's --timeout 300.
    assert 120 <= _seconds(flags["--attempt-deadline"]) < 300


def test_no_secret_is_committed_in_the_schedule() -> None:
    code = _code_lines((ROOT / "cron.yaml").read_text())
    assert "Authorization" not in code
    assert "X-Cron-Secret" not in code
    assert "--headers" not in code  # given on the command line, with the secret


def test_the_cloud_run_recipe_covers_the_shared_secret_and_oidc() -> None:
    recipe = (ROOT / "deploy" / "README.md").read_text()
    for needed in (
        "gcloud services enable run.googleapis.com",
        "cloudscheduler.googleapis.com",
        "secretmanager.googleapis.com",
        "roles/secretmanager.secretAccessor",
        "--set-secrets CRON_SECRET=cron-secret:latest",
        "--allow-unauthenticated",
        "--no-allow-unauthenticated",
        "roles/run.invoker",
        "--oidc-service-account-email",
        "--oidc-token-audience",
        "X-Cron-Secret=${CRON_SECRET}",
        "Authorization=Bearer ${CRON_SECRET}",
        "--flags-file=/tmp/cron.yaml",
        "--startup-probe httpGet.path=/healthz",
        "--no-cpu-throttling",
    ):
        assert needed in recipe, needed
    # With OIDC, Authorization carries Google's token: the job must not send the secret there.
    oidc_job = recipe[recipe.index("--oidc-service-account-email") :]
    oidc_job = oidc_job[: oidc_job.index("```")]
    assert "Authorization=Bearer" not in oidc_job


# --- the image ------------------------------------------------------------------------------


def _dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def _instructions() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments left out."""
    joined = re.sub(r"\\\n\s*", " ", _code_lines(_dockerfile()))
    return [line.strip() for line in joined.splitlines() if line.strip()]


def test_dockerfile_runs_as_non_root_without_dev_dependencies() -> None:
    steps = _instructions()
    runtime = steps[max(i for i, s in enumerate(steps) if s.startswith("FROM")) :]
    assert "USER app" in runtime
    assert runtime.index("USER app") < runtime.index('CMD ["python", "-m", "app", "serve"]')
    assert all("--no-dev" in s for s in steps if "uv sync" in s)
    assert re.search(r"useradd --system --uid (\d+)", _dockerfile())
    assert not any(s.startswith(("ENTRYPOINT", "HEALTHCHECK")) for s in steps)


def test_the_dependency_layer_sees_only_pyproject_and_the_lock() -> None:
    steps = _instructions()
    first_sync = next(i for i, s in enumerate(steps) if "uv sync" in s)
    assert "--no-install-project" in steps[first_sync]
    copies_before = [s for s in steps[:first_sync] if s.startswith("COPY")]
    assert copies_before == ["COPY pyproject.toml uv.lock ./"]
    # README (pyproject's readme, read by the project's build) and the sources come after.
    later = " ".join(s for s in steps[first_sync:] if s.startswith("COPY"))
    for path in ("README.md", "app", "sql", "deploy/fly_trigger.py"):
        assert path in later


def test_uv_is_pinned() -> None:
    pins = re.findall(r"pip install [^\n]*\buv(==[\w.]+)?", _dockerfile())
    assert pins
    assert all(pin.startswith("==") for pin in pins)


def test_the_code_is_root_owned_and_read_only_to_the_runtime_user() -> None:
    steps = _instructions()
    assert not any("--chown" in s or "chown " in s or "chmod" in s for s in steps)
    copy_from_build = [s for s in steps if s.startswith("COPY --from=")]
    assert copy_from_build == ["COPY --from=build /srv /srv"]
    # Both stages on one base, so the venv's interpreter link is valid in the runtime stage.
    assert [s for s in steps if s.startswith("FROM")] == [
        "FROM ${PYTHON_IMAGE} AS build",
        "FROM ${PYTHON_IMAGE}",
    ]


def test_the_start_up_and_readiness_are_documented_for_both_platforms() -> None:
    head = _dockerfile().split("\nARG ")[0]
    for needed in ("python -m app serve", "$PORT", "/healthz", "Cloud Run", "Fly", "HEALTHCHECK"):
        assert needed in head, needed
    readme = (ROOT / "README.md").read_text()
    assert "**Start-up**" in readme
    assert "**Readiness**" in readme


def _dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern that matches the path (or a parent folder) decides."""
    ignored = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if pattern.startswith("**/"):
            hit = any(fnmatch.fnmatch(part, pattern[3:]) for part in parts)
        else:
            hit = any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes)
        if hit:
            ignored = not negate
    return ignored


def test_the_build_context_holds_what_the_image_copies_and_no_secret() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for needed in (
        "pyproject.toml",
        "uv.lock",
        "README.md",
        "app/main.py",
        "app/store/postgres.py",
        "sql/001_roles_and_tables.sql",
        "deploy/fly_trigger.py",
    ):
        assert not _dockerignored(needed, patterns), needed
    for kept_out in (
        ".env",
        ".venv/bin/python",
        ".tools/uv-0.13.9/bin/uv",
        ".git/config",
        "tests/test_deploy.py",
        "bench/README.md",
        "app/__pycache__/main.cpython-311.pyc",
        "deploy/supabase_pg_cron.sql",
    ):
        assert _dockerignored(kept_out, patterns), kept_out


# --- Fly.io: fly.toml and the trigger -------------------------------------------------------


def _fly() -> dict[str, Any]:
    with (ROOT / "fly.toml").open("rb") as file:
        return tomllib.load(file)


def test_fly_runs_the_service_and_a_trigger_in_one_app() -> None:
    fly = _fly()
    assert fly["app"]
    assert fly["build"]["dockerfile"] == "Dockerfile"
    processes = fly["processes"]
    assert processes["app"] == "python -m app serve"
    assert processes["trigger"] == "python deploy/fly_trigger.py"
    assert (ROOT / "deploy" / "fly_trigger.py").is_file()
    assert "deploy/fly_trigger.py" in _dockerfile()  # the trigger is in the image
    assert sorted(p for vm in fly["vm"] for p in vm["processes"]) == ["app", "trigger"]
    # Stopping a machine lets a running call finish (its budget is 50 s).
    assert _seconds(fly["kill_timeout"]) >= 60


def test_fly_serves_only_the_app_group_and_checks_healthz() -> None:
    fly = _fly()
    service = fly["http_service"]
    assert service["processes"] == ["app"]
    assert service["internal_port"] == int(fly["env"]["PORT"]) == 8080
    assert service["force_https"] is True
    assert service["min_machines_running"] >= 1
    checks = service["checks"]
    assert [(c["method"], c["path"]) for c in checks] == [("GET", "/healthz")]
    assert _seconds(checks[0]["timeout"]) < _seconds(checks[0]["interval"])


def test_fly_keeps_secrets_out_of_the_file_and_times_out_the_trigger() -> None:
    fly = _fly()
    env = fly["env"]
    for secret in ("CRON_SECRET", "OPENROUTER_API_KEY", "SUPABASE_SERVICE_ROLE_KEY"):
        assert secret not in env
    # The trigger hangs up before Fly's proxy closes a connection silent for 60 s.
    assert 30 <= float(env["TRIGGER_TIMEOUT_S"]) < 60
    assert float(env["TRIGGER_TIMEOUT_S"]) == fly_trigger.TriggerSettings("u", "s").timeout_s
    assert float(env["TRIGGER_INTERVAL_S"]) == 60
    assert "fly secrets set" in (ROOT / "fly.toml").read_text()


def test_trigger_settings_come_from_fly_and_fail_in_one_line() -> None:
    settings = fly_trigger.settings_from_env({"CRON_SECRET": "s" * 20, "FLY_APP_NAME": "cq"})
    assert settings.url == "https://cq.fly.dev/process-queue"
    assert (settings.interval_s, settings.timeout_s, settings.body) == (60.0, 55.0, b"{}")

    with pytest.raises(fly_trigger.TriggerSettingsError) as caught:
        fly_trigger.settings_from_env({"TRIGGER_TIMEOUT_S": "soon", "TRIGGER_BODY": "[1]"})
    message = str(caught.value)
    assert "\n" not in message
    for name in ("CRON_SECRET", "TRIGGER_URL", "TRIGGER_TIMEOUT_S", "TRIGGER_BODY"):
        assert name in message


class _Recorder:
    """A loopback server that records each request and answers status/body after a delay, or
    closes the connection without an answer."""

    def __init__(
        self,
        status: int = 200,
        body: bytes = b'{"success": true}',
        delay_s: float = 0,
        hang_up: bool = False,
    ):
        self.requests: list[dict[str, Any]] = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                recorder.requests.append(
                    {
                        "path": self.path,
                        "headers": dict(self.headers.items()),
                        "body": self.rfile.read(length),
                    }
                )
                time.sleep(delay_s)
                if hang_up:  # as Fly's proxy does with a connection silent for 60 s
                    self.close_connection = True
                    return
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/process-queue"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder_factory() -> Iterator[type[_Recorder]]:
    made: list[_Recorder] = []

    class Made(_Recorder):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    yield Made
    for server in made:
        server.close()


def _settings(url: str, **overrides: Any) -> fly_trigger.TriggerSettings:
    return fly_trigger.TriggerSettings(url=url, secret=CRON_SECRET, **overrides)


def test_the_trigger_posts_an_empty_object_with_the_secret(
    recorder_factory: type[_Recorder], capsys: pytest.CaptureFixture[str]
) -> None:
    server = recorder_factory()
    outcome = fly_trigger.call_once(_settings(server.url))
    assert outcome.ok
    assert outcome.answer == {"success": True}
    [request] = server.requests
    assert request["path"] == "/process-queue"
    assert request["headers"]["Authorization"] == f"Bearer {CRON_SECRET}"
    assert request["headers"]["Content-Type"] == "application/json"
    assert json.loads(request["body"]) == {}

    fly_trigger.log_outcome(outcome)
    line = json.loads(capsys.readouterr().out)
    assert line["severity"] == "INFO"
    assert line["status"] == 200
    assert CRON_SECRET not in json.dumps(line)


def test_a_502_is_logged_as_an_error_with_the_answer(
    recorder_factory: type[_Recorder], capsys: pytest.CaptureFixture[str]
) -> None:
    answer = {"success": False, "circuit_open": "openrouter: 401", "released": 5}
    server = recorder_factory(status=502, body=json.dumps(answer).encode())
    outcome = fly_trigger.call_once(_settings(server.url))
    assert not outcome.ok
    fly_trigger.log_outcome(outcome)
    line = json.loads(capsys.readouterr().out)
    assert (line["severity"], line["status"], line["answer"]) == ("ERROR", 502, answer)


def test_the_trigger_hangs_up_at_its_timeout(recorder_factory: type[_Recorder]) -> None:
    server = recorder_factory(delay_s=3)
    started = time.monotonic()
    outcome = fly_trigger.call_once(_settings(server.url, timeout_s=0.3))
    assert time.monotonic() - started < 2
    assert outcome.timed_out
    assert outcome.status is None
    assert outcome.error is not None
    assert "no answer within 0.3 s" in outcome.error


def test_a_connection_cut_before_the_answer_is_a_warning_not_an_error(
    recorder_factory: type[_Recorder], capsys: pytest.CaptureFixture[str]
) -> None:
    server = recorder_factory(hang_up=True, delay_s=0.2)
    outcome = fly_trigger.call_once(_settings(server.url, timeout_s=5))
    assert len(server.requests) == 1  # it went out: the service goes on with the call
    assert (outcome.status, outcome.cut_off, outcome.timed_out) == (None, True, False)
    assert outcome.error is not None
    assert "the call goes on in the service" in outcome.error
    fly_trigger.log_outcome(outcome)
    assert json.loads(capsys.readouterr().out)["severity"] == "WARNING"


def test_no_server_is_an_error_not_a_crash(capsys: pytest.CaptureFixture[str]) -> None:
    outcome = fly_trigger.call_once(_settings("http://127.0.0.1:9/process-queue", timeout_s=2))
    assert outcome.status is None
    assert not outcome.unanswered
    assert outcome.error
    fly_trigger.log_outcome(outcome)
    assert json.loads(capsys.readouterr().out)["severity"] == "ERROR"


def test_the_loop_keeps_its_beat_while_a_call_is_slow(
    recorder_factory: type[_Recorder], capsys: pytest.CaptureFixture[str]
) -> None:
    server = recorder_factory(delay_s=0.5)  # each call outlasts the interval
    stop = threading.Event()
    loop = threading.Thread(
        target=fly_trigger.run_forever,
        args=(_settings(server.url, interval_s=0.2, timeout_s=5, max_in_flight=10), stop),
    )
    loop.start()
    time.sleep(0.95)
    stop.set()
    loop.join(timeout=5)
    assert not loop.is_alive()
    # Calls at 0, 0.2, 0.4, 0.6, 0.8 s, each answered after 0.5 s: the beat does not wait.
    assert 3 <= len(server.requests) <= 6
    time.sleep(0.7)  # let the calls in flight log their answers before the server closes


async def _statuses(conn: asyncpg.Connection) -> Counter[str]:
    rows = await conn.fetch("select status from campaign_messages")
    return Counter(r["status"] for r in rows)


@pytest.mark.parametrize("store_kind", ["postgres"])
async def test_the_trigger_runs_the_real_service(
    service: Service, conn: asyncpg.Connection
) -> None:
    await seed_campaign(conn, leads=3)
    settings = _settings(service.url + "/process-queue", timeout_s=30)
    outcome = await asyncio.to_thread(fly_trigger.call_once, settings)
    assert outcome.status == 200, outcome
    assert outcome.answer["processed"] == 3
    assert await _statuses(conn) == Counter({"sent": 3})


# --- Supabase pg_cron + pg_net: the SQL template --------------------------------------------

TEMPLATE = ROOT / "deploy" / "supabase_pg_cron.sql"

# Stand-ins with the real signatures: cron.schedule (pg_cron >= 1.4: a known name updates
# its job), cron.unschedule by name, net.http_post (pg_net: records the request; the worker
# would send it later) and vault.decrypted_secrets (a table where Supabase has a view).
_STAND_INS = """
create schema cron;
create table cron.job (
  jobid bigserial primary key, jobname text unique, schedule text, command text);
create function cron.schedule(job_name text, schedule text, command text) returns bigint
language sql as $$
  insert into cron.job (jobname, schedule, command) values (job_name, schedule, command)
  on conflict (jobname) do update set schedule = excluded.schedule, command = excluded.command
  returning jobid $$;
create function cron.unschedule(job_name text) returns boolean
language sql as $$
  with gone as (delete from cron.job where jobname = job_name returning 1)
  select exists (select 1 from gone) $$;
create schema net;
create table net.http_request_queue (
  id bigserial primary key, url text, body jsonb, params jsonb, headers jsonb,
  timeout_milliseconds int);
create function net.http_post(
  url text, body jsonb default '{}'::jsonb, params jsonb default '{}'::jsonb,
  headers jsonb default '{"Content-Type": "application/json"}'::jsonb,
  timeout_milliseconds int default 5000) returns bigint
language sql as $$
  insert into net.http_request_queue (url, body, params, headers, timeout_milliseconds)
  values (url, body, params, headers, timeout_milliseconds) returning id $$;
create schema vault;
create table vault.decrypted_secrets (name text primary key, decrypted_secret text);
"""


def _template_without_extensions() -> str:
    """The template as run on Supabase, less `create extension` (the stand-ins take their
    place)."""
    text = TEMPLATE.read_text()
    lines = re.findall(r"^create extension if not exists (\w+);$", text, re.MULTILINE)
    assert sorted(lines) == ["pg_cron", "pg_net"]
    return re.sub(r"^create extension if not exists \w+;$", "", text, flags=re.MULTILINE)


def test_the_template_is_not_a_migration_and_holds_no_secret() -> None:
    assert not (ROOT / "sql" / TEMPLATE.name).exists()
    assert not re.match(r"^\d{3}_", TEMPLATE.name)  # `migrate` loads sql/NNN_*.sql only
    code = _code_lines(TEMPLATE.read_text(), "--")
    assert "vault.decrypted_secrets" in code
    assert "'campaign_queue_cron_secret'" in code
    assert "'campaign_queue_url'" in code
    assert not re.search(r"Bearer [A-Za-z0-9]", code)
    assert "timeout_milliseconds := 5000" in code
    notes = TEMPLATE.read_text()
    assert "--no-cpu-throttling" in notes
    assert "5 s" in notes


async def _stand_ins(conn: asyncpg.Connection, service_url: str) -> None:
    await conn.execute(_STAND_INS)
    await conn.execute(
        "insert into vault.decrypted_secrets values ('campaign_queue_url', $1),"
        " ('campaign_queue_cron_secret', $2)",
        service_url + "/",  # a trailing slash, as people paste it
        CRON_SECRET,
    )


async def _schedule(conn: asyncpg.Connection, service_url: str) -> asyncpg.Record:
    await _stand_ins(conn, service_url)
    template = _template_without_extensions()
    await conn.execute(template)
    await conn.execute(template)  # running it again updates the one job
    [job] = await conn.fetch("select jobname, schedule, command from cron.job")
    return job


@pytest.mark.parametrize("store_kind", ["postgres"])
async def test_the_pg_cron_job_calls_the_service_which_finishes_after_pg_net_hangs_up(
    service: Service, conn: asyncpg.Connection
) -> None:
    job = await _schedule(conn, service.url)
    assert job["jobname"] == "campaign-queue-process"  # not the edge function's name
    assert _every_minute(job["schedule"])
    assert "vault.decrypted_secrets" in job["command"]  # read at each run, not copied in

    await conn.execute(job["command"])  # what pg_cron runs each minute
    [request] = await conn.fetch("select * from net.http_request_queue")
    assert request["url"] == service.url + "/process-queue"
    assert request["headers"] == {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {CRON_SECRET}",
    }
    assert request["body"] == {}
    assert request["timeout_milliseconds"] == 5000

    # What pg_net's worker then does, with the service slower than pg_net's patience
    # (scaled down: the call outlasts the caller's timeout by far).
    await seed_campaign(conn, leads=3)
    service.stubs.openrouter.latency = Latency(fixed_ms=300)
    with pytest.raises(httpx.ReadTimeout):
        async with httpx.AsyncClient() as http:
            await http.post(
                request["url"],
                content=json.dumps(request["body"]),
                headers=request["headers"],
                timeout=request["timeout_milliseconds"] / 25_000,  # 0.2 s
            )

    async with asyncio.timeout(15):
        while True:
            if await _statuses(conn) == Counter({"sent": 3}):
                break
            await asyncio.sleep(0.05)
    await assert_no_lease_left(conn)


# The edge function's job, as teams schedule it: pg_net posting to the function's URL.
_EDGE_JOB = """
select net.http_post(
  url := 'https://project.supabase.co/functions/v1/campaign-process-queue',
  headers := '{"Authorization": "Bearer service-role-key"}'::jsonb,
  body := '{"batch_size": 5}'::jsonb)
"""


@pytest.mark.parametrize("edge_job_name", ["campaign-process-queue", "send-campaigns"])
async def test_the_template_refuses_while_the_edge_functions_job_is_scheduled(
    conn: asyncpg.Connection, edge_job_name: str
) -> None:
    await _stand_ins(conn, "https://campaign-queue.example")
    await conn.execute("select cron.schedule($1, '* * * * *', $2)", edge_job_name, _EDGE_JOB)

    # One statement (Parse refuses several): psql, which goes on after an error, cannot
    # schedule ours after the refusal.
    await conn.prepare(_template_without_extensions())
    with pytest.raises(asyncpg.RaiseError) as refused:
        await conn.execute(_template_without_extensions())
    # The error says what to run; nothing was scheduled or replaced.
    assert f"select cron.unschedule('{edge_job_name}');" in str(refused.value)
    jobs = await conn.fetch("select jobname, command from cron.job")
    assert [(j["jobname"], j["command"]) for j in jobs] == [(edge_job_name, _EDGE_JOB)]

    # The switch-over's order: unschedule the edge function's job, then schedule ours.
    assert await conn.fetchval("select cron.unschedule($1)", edge_job_name) is True
    await conn.execute(_template_without_extensions())
    assert await conn.fetchval("select array_agg(jobname) from cron.job") == [
        "campaign-queue-process"
    ]


async def test_the_template_never_replaces_a_foreign_job_of_its_name(
    conn: asyncpg.Connection,
) -> None:
    await _stand_ins(conn, "https://campaign-queue.example")
    await conn.execute("select cron.schedule('campaign-queue-process', '0 3 * * *', 'select 1')")
    with pytest.raises(asyncpg.RaiseError, match="runs another command"):
        await conn.execute(_template_without_extensions())
    assert await conn.fetchval("select command from cron.job") == "select 1"


async def test_the_edge_functions_calls_claim_under_a_lease_it_cannot_read(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    """What the README's switch-over says happens while both run: the edge function's calls
    (the two original parameters, by name, as PostgREST passes them) reach our functions,
    which claim under a lease and answer `run` and `config`, not the `campaign_runs` object
    the edge function reads. Its messages wait out the lease; our claim takes them back then,
    each with a retry spent and a new lease."""
    await seed_campaign(conn, leads=2)
    horizon = datetime.now(UTC) - timedelta(hours=1)
    edge_claim = await rpc.call(
        "get_and_lock_campaign_messages", {"p_batch_size": 5, "p_one_hour_ago": horizon}
    )
    assert len(edge_claim) == 2
    assert all("campaign_runs" not in item and {"run", "config"} <= item.keys()
               for item in edge_claim)  # fmt: skip
    rows = await conn.fetch("select status, lock_token, claimed_by from campaign_messages")
    assert {(r["status"], r["lock_token"] is not None, r["claimed_by"]) for r in rows} == {
        ("queued", True, None)
    }
    assert await rpc.call("mark_old_campaign_messages_as_skipped", {"p_one_hour_ago": horizon}) == 0

    # Our service's claim skips them while the lease lives, and takes them over after it.
    assert (
        await rpc.call(
            "get_and_lock_campaign_messages",
            {"p_batch_size": 5, "p_one_hour_ago": horizon, "p_worker": "service"},
        )
        == []
    )
    await conn.execute("update campaign_messages set locked_at = now() - interval '11 minutes'")
    taken = await rpc.call(
        "get_and_lock_campaign_messages",
        {"p_batch_size": 5, "p_one_hour_ago": horizon, "p_worker": "service"},
    )
    assert sorted(i["id"] for i in taken) == sorted(i["id"] for i in edge_claim)
    assert {(i["retry_count"], i["claimed_by"]) for i in taken} == {(1, "service")}
    assert not {i["lock_token"] for i in taken} & {i["lock_token"] for i in edge_claim}


# --- Supabase CLI: sql/ into supabase/migrations --------------------------------------------


def test_sql_goes_into_supabase_migrations_once_and_in_order(tmp_path: Path) -> None:
    migrations = tmp_path / "supabase" / "migrations"
    migrations.mkdir(parents=True)
    (migrations / "20300101000000_the_apps_own.sql").write_text("select 1;\n")
    now = datetime(2026, 1, 1, tzinfo=UTC)

    written = to_supabase_migrations.copy_migrations(migrations, now=now)

    sources = sorted((ROOT / "sql").glob("[0-9][0-9][0-9]_*.sql"))
    assert [p.name[15:] for p in written] == [f"campaign_queue_{p.name}" for p in sources]
    versions = [p.name[:14] for p in written]
    assert versions == sorted(versions)
    assert len(set(versions)) == len(versions)
    assert versions[0] > "20300101000000"  # after the project's own, so `db push` takes them
    assert [p.read_text() for p in written] == [p.read_text() for p in sources]

    assert to_supabase_migrations.copy_migrations(migrations, now=now) == []  # up to date


def test_only_a_changed_file_is_copied_again(tmp_path: Path) -> None:
    sql = tmp_path / "sql"
    shutil.copytree(ROOT / "sql", sql)
    migrations = tmp_path / "migrations"
    to_supabase_migrations.copy_migrations(migrations, sql_dir=sql)
    changed = sorted(sql.glob("*.sql"))[-1]
    changed.write_text(changed.read_text() + "\n-- a later version\n")

    again = to_supabase_migrations.copy_migrations(migrations, sql_dir=sql)

    assert [p.name[15:] for p in again] == [f"campaign_queue_{changed.name}"]
    assert again[0].read_text() == changed.read_text()
