"""What `#flash` says after a console action: what changed, or why nothing did. Built from the
action's answer (app.operator_actions: {ok, reason, ...what changed}); a phone number is never
written whole."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.console.view import PACING_LABELS, mask_phones
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


def refused(what: str, answer: Mapping[str, Any]) -> str:
    reason = str(answer.get("reason") or "refused")
    why = REFUSALS.get(reason, reason.replace("_", " "))
    if answer.get("status_before"):
        why += f" ({answer['status_before']})"
    if answer.get("error") and answer.get("field"):
        field = PACING_LABELS.get(str(answer["field"]))
        why += f": {field.label if field else answer['field']}"
        detail = str(answer["error"]).partition(":")[2].strip()
        if field and detail:  # a pacing constraint's own words ("not after today")
            why += f" ({mask_phones(detail)})"
    return f"Refused: {what}: {why}. Nothing changed."


def run_flash(action: str, answer: Mapping[str, Any], group: str | None) -> str:
    """Says what changed: the run's status when it moved ("running → paused"), and the
    messages the action moved (a requeue leaves a running run running: its messages say it)."""
    run = f"run {short_id(answer.get('run_id'))}…"
    if not answer.get("ok"):
        return refused(f"{action} {run}", answer)
    changed = int(answer.get("messages_changed") or 0)
    moved = _moved(answer)
    if action == "requeue":
        which = f"“{group}”" if group else "every reason"
        said = f"Requeued {_messages(changed, 'failed message')} of {run} ({which}): pending again"
        return said + (f"; the run {moved}." if moved else ".")
    if action == "cancel":
        return f"Cancelled {run}: {moved}; {_messages(changed, 'pending message')} skipped."
    if action == "resume":
        extra = f"; {_messages(changed, 'message')} rescheduled" if changed else ""
        return f"Resumed {run}: {moved}{extra}."
    return f"Paused {run}: {moved}."


def inbox_flash(action: str, answer: Mapping[str, Any]) -> str:
    """action: "set pacing", "clear pacing" or "lift brake"."""
    inbox = f"inbox {short_id(answer.get('inbox_id'))}…"
    if not answer.get("ok"):
        return refused(f"{action} of {inbox}", answer)
    if action == "lift brake":
        return f"Lifted the brake of {inbox}" + _brake(answer) + "."
    before = _overrides(answer.get("overrides_before"))
    after = _overrides(answer.get("overrides_after"))
    changes = [f"{before} → {after}"] if before != after else []
    day_before, day_after = answer.get("first_sent_day_before"), answer.get("first_sent_day_after")
    if action == "set pacing" and day_before != day_after:
        changes.append(f"warm-up day 0 {day_before or 'not set'} → {day_after or 'not set'}")
    done = "Set pacing" if action == "set pacing" else "Cleared pacing"
    said = "; ".join(changes) or f"nothing changed, it already was: {after}"
    return f"{done} of {inbox}: {said}."


def contact_flash(action: str, answer: Mapping[str, Any]) -> str:
    """The answer names the contact by its last digits (never the whole phone)."""
    contact = f"contact {answer.get('phone') or '(phone not shown)'}"
    if not answer.get("ok"):
        return refused(f"{action} {contact}", answer)
    if action == "suppress":
        return f"Suppressed {contact}: no campaign message goes to it from now on."
    return f"Unsuppressed {contact}: campaigns may message it again."


def _moved(answer: Mapping[str, Any]) -> str:
    """ "running → paused", or "" when the status did not change."""
    before, after = answer.get("status_before"), answer.get("status_after")
    return "" if before == after else f"{before} → {after}"


def _messages(number: int, what: str) -> str:
    return f"{number} {what}" + ("" if number == 1 else "s")


def _overrides(value: object) -> str:
    """ "min gap 30 s, daily cap 200", in the form's words."""
    if not isinstance(value, Mapping):
        value = {}
    said = [_override(k, v) for k, v in value.items() if v is not None]
    return ", ".join(said) or "the service's settings"


def _override(name: str, value: object) -> str:
    field = PACING_LABELS.get(name)
    if field is None:
        return f"{name.replace('_', ' ')} {value}"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{field.label} {value}" + (f" {field.unit}" if field.unit else "")


def _brake(answer: Mapping[str, Any]) -> str:
    reason = answer.get("brake_reason_before") or answer.get("brake_reason")
    return f" (it was: {mask_phones(reason)})" if reason else ""
