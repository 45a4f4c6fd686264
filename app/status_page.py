"""How many runs the status shows at most (campaign_queue_status's p_limit; GET /status's
`?limit=`; `python -m app status --limit N`): the default and the range the database takes."""

STATUS_RUNS_DEFAULT = 50
STATUS_RUNS_MIN = 1
STATUS_RUNS_MAX = 500
