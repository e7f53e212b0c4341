"""The parts of a request body every endpoint reads the same way, checked before anything is
priced: the JSON itself, `model`, `stream` and `stream_options`. No I/O."""

from __future__ import annotations

from typing import Any

import orjson

from proxy.core.errors import BadRequest


def parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(
            f"The request body is not valid JSON ({exc.args[0]}). Send a JSON object.",
            code="invalid_json",
        ) from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.", code="invalid_json")
    if raw.count(b"[") + raw.count(b"{") > _MAX_DEPTH:
        # orjson reads 1024 levels but writes only 255: what we must re-serialise (to count a
        # tool's tokens, or to rewrite the body) has to fit the smaller limit.
        try:
            orjson.dumps(body)
        except orjson.JSONEncodeError:
            raise BadRequest(
                f"The request body nests arrays and objects more than {_MAX_DEPTH} levels deep.",
                code="invalid_json",
            ) from None
    return body


_MAX_DEPTH = 254
"""Nesting orjson.dumps accepts (its limit is 255 levels)."""


def require_model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest(
            "Missing or invalid 'model': send the model name as a non-empty string.",
            code="invalid_model",
            param="model",
        )
    return model


def stream_flag(body: dict[str, Any], endpoint: str) -> bool:
    """`stream`, refused when it is not a boolean or the endpoint cannot stream."""
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("'stream' must be true or false.", code="invalid_type", param="stream")
    if stream and endpoint == "embeddings":
        raise BadRequest("Embeddings cannot be streamed.", code="invalid_type", param="stream")
    return stream


def client_asked_usage(body: dict[str, Any]) -> bool:
    """The client asked for `stream_options.include_usage` itself."""
    options = body.get("stream_options")
    if options is None:
        return False
    if not isinstance(options, dict):
        raise BadRequest(
            "'stream_options' must be an object.", code="invalid_type", param="stream_options"
        )
    return options.get("include_usage") is True


def expect_str(value: Any, path: str) -> str:
    """`value` if it is a string; otherwise a 400 naming `path` and what was sent."""
    if not isinstance(value, str):
        raise BadRequest(f"{path} must be a string, got {describe(value)}", param=path)
    return value


def describe(value: Any) -> str:
    """What the client sent, for an error message: small numbers as themselves, else the type."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return repr(value)
    names = {
        type(None): "null",
        bool: "a boolean",
        str: "a string",
        list: "an array",
        dict: "an object",
    }
    return names.get(type(value), type(value).__name__)
