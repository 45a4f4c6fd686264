"""What #flash says for each action's answer (app.console.flash), without a database: the
answers are shaped as the operator actions' SQL functions return them (tests/console/
test_run_buttons.py and test_page.py check the same wording end to end)."""

from __future__ import annotations

from app.console.flash import contact_flash, inbox_flash, run_flash
from app.console.view import PACING_INPUTS
from app.operator_actions import PacingBody

RUN = "1a2b3c4d-0000-4000-8000-000000000001"
INBOX = "9f8e7d6c-0000-4000-8000-000000000002"


def run_answer(before: str, after: str, changed: int) -> dict[str, object]:
    return {
        "ok": True,
        "reason": None,
        "run_id": RUN,
        "status_before": before,
        "status_after": after,
        "messages_changed": changed,
    }


def test_a_requeue_that_leaves_the_status_says_what_it_moved_not_running_to_running() -> None:
    said = run_flash("requeue", run_answer("running", "running", 2), "send: HTTP 400")

    assert said == "Requeued 2 failed messages of run 1a2b3c4d… (“send: HTTP 400”): pending again."
    assert "→" not in said


def test_a_requeue_that_reopens_an_ended_run_says_so() -> None:
    said = run_flash("requeue", run_answer("completed", "running", 1), None)

    assert said == (
        "Requeued 1 failed message of run 1a2b3c4d… (every reason): pending again; "
        "the run completed → running."
    )


def test_the_run_buttons_that_move_the_status_say_from_what_to_what() -> None:
    assert run_flash("pause", run_answer("running", "paused", 0), None) == (
        "Paused run 1a2b3c4d…: running → paused."
    )
    assert run_flash("resume", run_answer("paused", "running", 3), None) == (
        "Resumed run 1a2b3c4d…: paused → running; 3 messages rescheduled."
    )
    assert run_flash("cancel", run_answer("paused", "cancelled", 1), None) == (
        "Cancelled run 1a2b3c4d…: paused → cancelled; 1 pending message skipped."
    )


def pacing_answer(
    before: object, after: object, day: tuple[object, object] = (None, None)
) -> dict[str, object]:
    return {
        "ok": True,
        "reason": None,
        "inbox_id": INBOX,
        "overrides_before": before,
        "overrides_after": after,
        "first_sent_day_before": day[0],
        "first_sent_day_after": day[1],
    }


def test_set_pacing_names_the_overrides_in_the_forms_words() -> None:
    after = {"min_gap_s": 30.0, "max_gap_s": 90.5, "daily_cap": None, "hourly_cap": 40}

    said = inbox_flash("set pacing", pacing_answer(None, after))

    assert said == (
        "Set pacing of inbox 9f8e7d6c…: the service's settings → "
        "min gap 30 s, max gap 90.5 s, hourly cap 40."
    )


def test_set_pacing_of_the_warm_up_day_0_alone_says_that_it_changed() -> None:
    overrides = {"daily_cap": 200}

    said = inbox_flash("set pacing", pacing_answer(overrides, overrides, (None, "2026-11-01")))

    assert said == "Set pacing of inbox 9f8e7d6c…: warm-up day 0 not set → 2026-11-01."


def test_set_pacing_to_the_values_it_had_says_nothing_changed() -> None:
    overrides = {"daily_cap": 200}

    said = inbox_flash("set pacing", pacing_answer(overrides, overrides))

    assert said == "Set pacing of inbox 9f8e7d6c…: nothing changed, it already was: daily cap 200."


def test_a_pacing_value_the_database_refused_is_named_as_the_form_names_it() -> None:
    answer = {"ok": False, "reason": "invalid_value", "inbox_id": INBOX}
    answer["error"] = "first_sent_day: not after today"
    answer["field"] = "first_sent_day"

    assert inbox_flash("set pacing", answer) == (
        "Refused: set pacing of inbox 9f8e7d6c…: a value was refused: warm-up day 0 "
        "(not after today). Nothing changed."
    )


def test_the_contact_buttons_say_what_the_suppression_does() -> None:
    answer = {"ok": True, "phone": "***0001", "suppressed_before": False, "suppressed_after": True}

    assert contact_flash("suppress", answer) == (
        "Suppressed contact ***0001: no campaign message goes to it from now on."
    )
    assert contact_flash("unsuppress", {**answer, "suppressed_after": False}) == (
        "Unsuppressed contact ***0001: campaigns may message it again."
    )


def test_the_pacing_form_has_one_labelled_input_per_field_the_action_takes() -> None:
    assert [field.name for field in PACING_INPUTS] == list(PacingBody.model_fields)
    assert all(field.label for field in PACING_INPUTS)
