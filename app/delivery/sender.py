"""The internal-send-ai-message client: one text to one conversation, idempotently."""

from __future__ import annotations

import logging
import time

import httpx

from app.outbound import (
    OutboundError,
    RetryableError,
    RetryPolicy,
    post_json,
    with_retries,
)
from app.settings import Settings

log = logging.getLogger("campaign_queue")


class Sender:
    def __init__(self, http: httpx.AsyncClient, settings: Settings) -> None:
        self._http = http
        self._url = settings.resolved_send_url
        key = settings.supabase_service_role_key
        self._key = key.get_secret_value() if key else ""
        self._timeout = settings.send_timeout_s
        self._policy = RetryPolicy.from_settings(settings)

    async def send(
        self,
        conversation_id: str,
        text: str,
        idempotency_key: str,
        deadline: float | None = None,
    ) -> str | None:
        """Sends and returns provider_response.key.id (None when the answer does not say).

        Every attempt carries the same Idempotency-Key, so a send that timed out after the
        provider took it is not delivered twice by a receiver that honours the key.
        """
        headers = {"X-Service-Role-Key": self._key, "Idempotency-Key": idempotency_key}
        body = {"conversationId": conversation_id, "text": text}

        async def attempt() -> str | None:
            # Never longer than the deadline: the caller's lease must outlast the request.
            timeout_s = self._timeout
            if deadline is not None:
                timeout_s = max(0.05, min(timeout_s, deadline - time.monotonic()))
            response = await post_json(
                self._http, self._url, body, headers=headers, timeout_s=timeout_s, what="send"
            )
            return _provider_message_id(response)

        def retrying(exc: OutboundError, wait_s: float) -> None:
            # Said, because a retried part may reach the receiver twice (the first try may
            # have been delivered before its answer was lost): always with the same key.
            log.warning(
                "send retrying the same part with its Idempotency-Key",
                extra={
                    "step": "send",
                    "message_id": idempotency_key.split(":")[0],
                    "error": str(exc),
                    "ms": int(wait_s * 1000),
                },
            )

        return await with_retries(attempt, self._policy, deadline=deadline, on_retry=retrying)


def _provider_message_id(response: httpx.Response) -> str | None:
    """The id from a 2xx answer. An unreadable body still means delivered: never re-sent.

    Only an explicit `"success": false` says the text did not go out; the retry carries the
    same Idempotency-Key, so it is safe either way.
    """
    try:
        data = response.json()
    except ValueError:
        return None
    if isinstance(data, dict) and data.get("success") is False:
        raise RetryableError("send: the endpoint answered success=false")
    try:
        value = data["provider_response"]["key"]["id"]
    except (KeyError, IndexError, TypeError):
        return None
    return str(value) if value is not None else None
