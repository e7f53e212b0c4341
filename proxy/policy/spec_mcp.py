"""What the operator writes about MCP: `mcp_servers:` (where `/mcp/{server}` relays to, and
how) and the entries of `actions:` (a price, plus `charge_on_error` for `mcp:` keys). Each value
is checked on its own here; mcp.py and budgets.py check what spans sections.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from proxy.policy.spec_types import SPEC_CONFIG, check_env_name, check_service_url


class _Spec(BaseModel):
    model_config = SPEC_CONFIG


def _check_server_url(url: str) -> str:
    return check_service_url(
        url,
        what="an MCP server's url",
        example="http://crm-mcp:8000/mcp",
        key_field="token_env",
    )


class McpServerSpec(_Spec):
    url: Annotated[str, AfterValidator(_check_server_url)]
    token_env: Annotated[str, AfterValidator(check_env_name)] | None = None
    """The environment variable holding the server's credential; without it none is sent."""
    auth: Literal["bearer", "x-api-key", "api-key"] = "bearer"
    unpriced_tools: Literal["deny", "allow"] = "deny"
    timeout_seconds: Annotated[int, Field(ge=1, le=3600)] = 300
    """A tools/call's whole answer."""


class ActionSpec(BaseModel):
    """`{<UNIT>: amount}`, plus `charge_on_error` on `mcp:` keys. The unit is a key of the
    operator's choosing, so amounts are the model's extra fields, checked in budgets.py (which
    names a misspelt key as an unknown unit)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    charge_on_error: Literal["reserved", "released"] | None = None
    """An isError result or a timeout: charge the reservation (default) or release it."""
    __pydantic_extra__: dict[str, Any] = Field(init=False)

    @property
    def prices(self) -> dict[str, Any]:
        """{unit: amount as written}."""
        return dict(self.__pydantic_extra__)
