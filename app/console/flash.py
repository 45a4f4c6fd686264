"""What `#flash` says after a console action: what changed, or why nothing did. Built from the
action's answer (app.operator_actions: {ok, reason, ...what changed}); a phone number is never
written whole."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.console.view import mask_phones
from app.status_format import short_id

REFUSALS = {
    "run_not_found": "no such run",
    "inbox_not_found": "no such inbox",
    "not_running": "it is not running",
    "not_paused": "it is not paused",
    "not_cancellable": "it has ended",
    "run_cancelled": "it was cancelled",
    "inbox_disconnected": "its inbox is disconnected",
    "nothing_to_requeue": "it has no failed message to requeue",
    "no_overrides": "it has no pacing overrides",
    "invalid_value": "a value was refused",
    "not_braked": "it is not braked",
    "workspace_not_found": "no such workspace",
    "already_suppressed": "it is already suppressed",
    "not_suppressed": "it is not suppressed",
}
DONE = {"pause": "paused", "resume": "resumed", "cancel": "cancelled", "requeue": "requeued"}


def refused(what: str, answer: Mapping[str, Any]) -> str:
    reason = str(answer.get("reason") or "refused")
    why = REFUSALS.get(reason, reason.replace("_", " "))
    if answer.get("status_before"):
        why += f" ({answer['status_before']})"
    if answer.get("error") and answer.get("field"):
        why += f": {answer['field']}"
    return f"Refused: {what}: {why}. Nothing changed."


def run_flash(action: str, answer: Mapping[str, Any], group: str | None) -> str:
    run = f"run {short_id(answer.get('run_id'))}…"
    if not answer.get("ok"):
        return refused(f"{action} {run}", answer)
    moved = f"{answer.get('status_before')} → {answer.get('status_after')}"
    changed = int(answer.get("messages_changed") or 0)
    if action == "requeue":
        which = f"“{group}”" if group else "all reasons"
        return f"Requeued {changed} failed message(s) of {run} ({which}): {moved}."
    if action == "cancel":
        return f"Cancelled {run}: {moved}; {changed} pending message(s) skipped."
    extra = f"; {changed} message(s) rescheduled" if action == "resume" and changed else ""
    return f"{DONE[action].capitalize()} {run}: {moved}{extra}."


def inbox_flash(action: str, answer: Mapping[str, Any]) -> str:
    """action: "set pacing", "clear pacing" or "lift brake"."""
    inbox = f"inbox {short_id(answer.get('inbox_id'))}…"
    if not answer.get("ok"):
        return refused(f"{action} of {inbox}", answer)
    if action == "lift brake":
        return f"Lifted the brake of {inbox}" + _brake(answer) + "."
    done = "Set pacing" if action == "set pacing" else "Cleared pacing"
    day_0 = ""
    if answer.get("first_sent_day_before") != answer.get("first_sent_day_after"):
        day_0 = (
            f"; warm-up day 0 {answer.get('first_sent_day_before') or 'none'} → "
            f"{answer.get('first_sent_day_after') or 'none'}"
        )
    return (
        f"{done} of {inbox}: {_overrides(answer.get('overrides_before'))} → "
        f"{_overrides(answer.get('overrides_after'))}{day_0}."
    )


def contact_flash(action: str, answer: Mapping[str, Any]) -> str:
    """The answer names the contact by its last digits (never the whole phone)."""
    contact = f"contact {answer.get('phone') or '(phone not shown)'}"
    if not answer.get("ok"):
        return refused(f"{action} {contact}", answer)
    moved = f"suppressed {_yes(answer.get('suppressed_before'))} → "
    moved += _yes(answer.get("suppressed_after"))
    return f"{action.capitalize()}ed {contact}: {moved}."


def _yes(value: object) -> str:
    return "yes" if value else "no"


def _overrides(value: object) -> str:
    if not isinstance(value, Mapping) or not value:
        return "none (the service's settings)"
    return ", ".join(f"{k} {v}" for k, v in value.items() if v is not None) or "none"


def _brake(answer: Mapping[str, Any]) -> str:
    reason = answer.get("brake_reason_before") or answer.get("brake_reason")
    return f" (it was: {mask_phones(reason)})" if reason else ""
