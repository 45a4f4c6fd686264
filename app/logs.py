"""JSON logs, one object a line: phone numbers masked, secrets never printed."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime

LOGGER_NAME = "campaign_queue"
_FIELDS = (
    "run_id",
    "message_id",
    "step",
    "ms",
    "worker",
    "counts",
    "error",
    "phone",
    "inbox_id",  # the failure brake's line
    "workspace_id",  # an operator's action (app.operator_routes, app.console.actions)
    "status_after",
    # the start-up line (app.startup)
    "version",
    "store",
    "settings",
)
# Defence in depth (phone numbers are masked before they are logged): 10 to 15 digits,
# single spaces or dashes between them, not part of a word, an id or a date.
_PHONE = re.compile(r"(?<![\w.-])\+?\d(?:[ -]?\d){9,14}(?![\w.]|-\d)")

log = logging.getLogger(LOGGER_NAME)


def mask_phone(phone: str | None) -> str:
    """+5511912345678 -> +55*******5678: enough to tell numbers apart, not to dial one."""
    if not phone:
        return ""
    digits = re.sub(r"\D", "", phone)
    if len(digits) <= 4:
        return "*" * len(digits)
    keep_head = 2 if len(digits) > 8 else 0
    head = ("+" if phone.strip().startswith("+") else "") + digits[:keep_head]
    return head + "*" * (len(digits) - keep_head - 4) + digits[-4:]


def _mask_phones(text: str) -> str:
    return _PHONE.sub(lambda match: mask_phone(match.group(0)), text)


class JsonFormatter(logging.Formatter):
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = sorted((s for s in secrets if s and len(s) >= 4), key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "severity": record.levelname,
            "message": record.getMessage(),
        }
        for field in _FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                entry[field] = value
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
        line = json.dumps(entry, ensure_ascii=False, default=str)
        for secret in self._secrets:
            line = line.replace(secret, "[redacted]")
        return _mask_phones(line)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time of the write, not at configuration."""

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


def configure_logging(level: str = "INFO", secrets: Iterable[str] = ()) -> None:
    """Sends the service's logs to stderr as JSON lines (idempotent)."""
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter(secrets))
    log.handlers = [handler]
    log.setLevel(level.upper())
    log.propagate = False
