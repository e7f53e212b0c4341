"""How a tools/call ended, and what its reservation becomes. No I/O.

Only the JSON-RPC message whose `id` is the request's says the call finished (progress
notifications, the server's own requests and pings come first on an SSE stream); a message
with a `method` is a request or a notification, never the answer, even with that id.

    ending            what came back                                       reservation
    RESULT            a result without isError (resultType absent/complete) committed
    TOOL_ERROR        a result with isError: the tool ran, or refused       charge_on_error
    PROTOCOL_ERROR    a JSON-RPC error: the tool did not run                 released
    CANCELLED         the error a server answers a call its client           charge_on_error
                      cancelled with (-32800): the tool may have begun
    INPUT_REQUIRED    resultType input_required: the client asks again       released
                      under a new id (which reserves again)
    REFUSED           an HTTP 4xx before any answer                          released
    NOT_SENT          the server could not be reached                        released
    TIMEOUT           no answer within the server's timeout                  charge_on_error
    FAILED            a 5xx, a cut stream (or one over max_answer_bytes),    charge_on_error
                      a body that is no answer

charge_on_error is the tool's price's rule: `reserved` (the default: the tool may have had its
effect) commits the reservation, `released` releases it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, Literal

REQUEST_CANCELLED = -32800
"""What a server answers a request its client cancelled (notifications/cancelled) with."""


class Ending(enum.Enum):
    RESULT = "result"
    TOOL_ERROR = "tool_error"
    PROTOCOL_ERROR = "protocol_error"
    CANCELLED = "cancelled"
    INPUT_REQUIRED = "input_required"
    REFUSED = "refused"
    NOT_SENT = "not_sent"
    TIMEOUT = "timeout"
    FAILED = "failed"


RELEASED = frozenset(
    {Ending.PROTOCOL_ERROR, Ending.INPUT_REQUIRED, Ending.REFUSED, Ending.NOT_SENT}
)
"""The tool did not run (or has not finished: input_required): nothing is charged."""


def answers(message: Any, request_id: Any) -> bool:
    """Whether `message` is the answer to the request `request_id`: a response (no method)
    with that id; an error with a null id answers too (a server that could not read the id)."""
    if not isinstance(message, dict) or "method" in message:
        return False
    if "result" not in message and "error" not in message:
        return False
    found = message.get("id")
    return found == request_id or ("error" in message and found is None)


def ending_of(answer: Mapping[str, Any]) -> Ending:
    """The ending an answer (`answers` said so) means."""
    if "error" in answer:
        error = answer["error"]
        cancelled = isinstance(error, dict) and error.get("code") == REQUEST_CANCELLED
        return Ending.CANCELLED if cancelled else Ending.PROTOCOL_ERROR
    result = answer.get("result")
    if not isinstance(result, dict):
        return Ending.FAILED
    if result.get("resultType", "complete") == "input_required":
        return Ending.INPUT_REQUIRED
    return Ending.TOOL_ERROR if result.get("isError") is True else Ending.RESULT


def charges(ending: Ending, charge_on_error: Literal["reserved", "released"]) -> bool:
    """Whether the reservation is committed (True) or released."""
    if ending is Ending.RESULT:
        return True
    if ending in RELEASED:
        return False
    return charge_on_error == "reserved"
