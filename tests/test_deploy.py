"""cron.yaml and the Dockerfile as the platforms read them (no Docker engine runs here)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import yaml

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


def test_cron_calls_post_process_queue_every_minute() -> None:
    flags = yaml.safe_load((ROOT / "cron.yaml").read_text())
    fields = flags["--schedule"].split()
    assert len(fields) == 5
    assert _minutes(fields[0]) == set(range(60))
    assert fields[1:] == ["*", "*", "*", "*"]
    assert flags["--http-method"] == "POST"
    assert urlsplit(flags["--uri"]).path == "/process-queue"
    assert all(key.startswith("--") for key in flags)  # a gcloud --flags-file


def test_no_secret_is_committed_in_the_schedule() -> None:
    text = (ROOT / "cron.yaml").read_text()
    assert "Authorization" not in "".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")
    )


def test_dockerfile_runs_as_non_root_without_dev_dependencies() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^USER app$", text, re.MULTILINE)
    assert "--no-dev" in text
    assert "HEALTHCHECK" in text
    assert "/healthz" in text
    assert re.search(r'^CMD \["python", "-m", "app", "serve"\]$', text, re.MULTILINE)
