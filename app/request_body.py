"""A JSON body as a pydantic model, or the 422 answer in POST /process-queue's shape.

Empty means `{}`; `null`, a list or a scalar is 422; the input is never echoed."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from app.error_answers import unprocessable

Model = TypeVar("Model", bound=BaseModel)


async def parse_body(request: Request, model: type[Model]) -> Model | JSONResponse:
    raw = await request.body()
    try:
        data = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return _unprocessable(
            [{"loc": ["body"], "msg": "body is not valid JSON", "type": "json_invalid"}]
        )
    except RecursionError:  # json.loads recurses once per nesting level
        return _unprocessable(
            [{"loc": ["body"], "msg": "body is nested too deeply", "type": "json_invalid"}]
        )
    if not isinstance(data, dict):
        what = "null" if data is None else type(data).__name__
        return _unprocessable(
            [
                {
                    "loc": ["body"],
                    "msg": f"body must be a JSON object (or empty), not {what}",
                    "type": "model_type",
                }
            ]
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        return _unprocessable(
            exc.errors(include_url=False, include_context=False, include_input=False)
        )


def _unprocessable(errors: list[Any]) -> JSONResponse:
    return unprocessable(
        {"loc": ["body", *[p for p in e["loc"] if p != "body"]], "msg": e["msg"], "type": e["type"]}
        for e in errors
    )
