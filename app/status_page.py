"""How many runs the status shows at most (campaign_queue_status's p_limit; GET /status's
`?limit=`; `python -m app status --limit N`): the default and the range the database takes;
GET /status's `?offset=` and `?status=` as the database takes them."""

from typing import Literal

STATUS_RUNS_DEFAULT = 50
STATUS_RUNS_MIN = 1
STATUS_RUNS_MAX = 500
STATUS_OFFSET_MAX = 1_000_000  # as campaign_queue_status's p_offset takes it
# The runs GET /status's `?status=` shows; unset: the running and paused ones.
StatusFilter = Literal["all", "running", "paused", "completed", "failed", "cancelled"]
