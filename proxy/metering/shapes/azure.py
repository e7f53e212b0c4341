"""Azure OpenAI's deployment paths. No I/O.

Azure serves OpenAI's bodies on `/openai/deployments/{deployment}/chat/completions`
(`/completions`, `/embeddings`) with an `api-version` query parameter and an `api-key` header.
The deployment names the model: an upstream of `kind: azure` maps its deployments to the models
they run (`deployments: {my-gpt4o: gpt-4o}`), and budgets and prices use that model. The path
keeps the deployment the client named; a degrade to another model goes to a deployment of that
model on the same upstream, or does not apply.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from proxy.core.errors import BadRequest, NotFound

PREFIX = "/openai/deployments/"
OPERATIONS: dict[str, str] = {
    "chat/completions": "/v1/chat/completions",
    "completions": "/v1/completions",
    "embeddings": "/v1/embeddings",
}
"""Operation below a deployment → the OpenAI path whose endpoint serves it."""
ROUTES: tuple[str, ...] = tuple(PREFIX + "{deployment}/" + op for op in OPERATIONS)
"""aiohttp route templates for the proxy's app."""

DEPLOYMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_API_VERSION = re.compile(r"[A-Za-z0-9._-]{1,64}")


def parse_path(path: str) -> tuple[str, str] | None:
    """(deployment, the OpenAI path of its operation) for an Azure deployment path, else None."""
    if not path.startswith(PREFIX):
        return None
    deployment, _, operation = path[len(PREFIX) :].partition("/")
    if operation not in OPERATIONS or not DEPLOYMENT.fullmatch(deployment):
        return None
    return deployment, OPERATIONS[operation]


def not_a_deployment(path: str) -> NotFound:
    """The refusal of a deployment path whose name no upstream could list (the router takes
    any segment; the policy's `deployments:` only names DEPLOYMENT)."""
    deployment = path[len(PREFIX) :].partition("/")[0]
    return NotFound(
        f"No deployment {deployment[:130]!r}: a deployment name is 1 to 128 characters of "
        "A-Z a-z 0-9 _ . - and starts with a letter, a digit or _. Check the deployment in the "
        "URL (the client's `model`).",
        code="deployment_not_found",
    )


def upstream_path(deployment: str, suffix: str, api_version: str | None, upstream: str) -> str:
    """The path below an Azure upstream's base URL (which ends in /openai): the deployment, the
    operation (`suffix`, e.g. /chat/completions) and the api-version."""
    if api_version is None:
        raise BadRequest(
            f"Upstream {upstream!r} is Azure OpenAI, which needs an api-version: add "
            "'?api-version=2024-10-21' (or the version you use) to the URL, or ask the operator "
            "to set the upstream's api_version.",
            code="missing_api_version",
            param="api-version",
        )
    if not _API_VERSION.fullmatch(api_version):
        raise BadRequest(
            f"'api-version' {api_version[:64]!r} is not an API version such as 2024-10-21.",
            code="invalid_api_version",
            param="api-version",
        )
    return f"/deployments/{quote(deployment, safe='')}{suffix}?api-version={api_version}"
