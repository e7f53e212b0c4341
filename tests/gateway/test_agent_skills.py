"""Agent Skills on /v1/messages (issue 13): `container: {"skills": [...]}` adds each skill's
description to the system prompt and loads its files as code execution input, none of which the
request shows, so with `request_fields: strict` (the default) it is refused with 400
`unpriced_feature` naming `container.skills`, before anything is reserved or sent. A container
id (a string, or `{"id": ...}`) only reuses the code execution tool's container and stays
cost-neutral; `request_fields: forward` forwards skills unbudgeted.

Each call runs with the real anthropic SDK on both stores; the fake provider is the oracle of
what a forwarded call billed: billed <= charged <= reserved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anthropic
import pytest
from prices_support import HEADERS, billed_cost, edited_policy, measured_call, tenant_row

from proxy.policy import load_policy
from proxy.policy.runtime import Policy
from proxy.testing.fake_upstream import FakeSettings, FakeUpstream
from proxy.testing.local import Stack, local_stack

LATENCY = 0.15
SKILL = {"type": "anthropic", "skill_id": "pptx", "version": "latest"}
CODE_EXECUTION = {"type": "code_execution_20250825", "name": "code_execution"}
BETAS = ["code-execution-2025-08-25", "skills-2025-10-02"]


def code_execution_priced(tmp_path: Path, forward: bool = False) -> Policy:
    """The prices policy with claude-sonnet-4 pricing the code execution tool, so a call with
    skills is refused for its skills alone; with `forward`, `request_fields: forward` too."""
    old = "    tool_calls: {web_search: {per_call: 0.01, input_tokens: 600}}\n"
    policy = edited_policy(tmp_path, old, old.replace("}}\n", "}, code_execution: 0.05}\n"))
    if forward:
        path = tmp_path / "policy.yaml"
        path.write_text(path.read_text() + "request_fields: forward\n")
        policy = load_policy(path)
    return policy


async def create(stack: Stack, container: Any) -> Any:
    async with anthropic.AsyncAnthropic(
        base_url=stack.url, api_key="unused", default_headers=HEADERS, max_retries=0
    ) as sdk:
        return await sdk.beta.messages.create(
            model="claude-sonnet-4",
            max_tokens=20,
            messages=[{"role": "user", "content": "Make a one-slide deck about budgets."}],
            tools=[CODE_EXECUTION],  # type: ignore[list-item]
            container=container,
            betas=BETAS,  # type: ignore[list-item]
        )


SKILLS = {
    "skills": {"skills": [SKILL]},
    "id-and-skills": {"id": "container_abc", "skills": [SKILL]},
}


@pytest.mark.parametrize("case", SKILLS)
async def test_a_container_with_skills_is_refused_naming_container_skills(
    tmp_path: Path, store_url: str, case: str
) -> None:
    fake = FakeUpstream(FakeSettings(latency=LATENCY))
    async with local_stack(code_execution_priced(tmp_path), store=store_url, fake=fake) as stack:
        with pytest.raises(anthropic.BadRequestError) as raised:
            await create(stack, SKILLS[case])
        row = await tenant_row(stack.ledger)
    body: Any = raised.value.body
    error = body["error"]
    assert body["type"] == "error" and error["type"] == "invalid_request_error", body
    assert error["code"] == "unpriced_feature", body
    assert "'container.skills'" in error["message"] and "Agent Skills" in error["message"], body
    assert "Leave it out" in error["message"], body
    assert "request_fields: forward" in error["message"], body
    assert fake.requests == [] and fake.billed == []
    assert (row.spent, row.reserved) == (0, 0)


NEUTRAL: dict[str, Any] = {
    "id": "container_abc",
    "object-with-id": {"id": "container_abc"},
    "no-skills": {"id": "container_abc", "skills": []},
}


@pytest.mark.parametrize("case", NEUTRAL)
async def test_a_container_id_is_forwarded_as_sent_within_its_reservation(
    tmp_path: Path, store_url: str, case: str
) -> None:
    fake = FakeUpstream(FakeSettings(latency=LATENCY))
    async with local_stack(code_execution_priced(tmp_path), store=store_url, fake=fake) as stack:
        _, reserved, charged = await measured_call(stack.ledger, create(stack, NEUTRAL[case]))
    [billed] = fake.billed
    [(_, _, sent)] = fake.requests
    assert sent["container"] == NEUTRAL[case]
    assert billed_cost(billed) == charged <= reserved, (billed, charged, reserved)


async def test_skills_are_forwarded_unbudgeted_with_request_fields_forward(
    tmp_path: Path, store_url: str
) -> None:
    fake = FakeUpstream(FakeSettings(latency=LATENCY))
    policy = code_execution_priced(tmp_path, forward=True)
    async with local_stack(policy, store=store_url, fake=fake) as stack:
        _, _, charged = await measured_call(stack.ledger, create(stack, SKILLS["skills"]))
    [billed] = fake.billed
    [(_, _, sent)] = fake.requests
    assert sent["container"] == SKILLS["skills"]
    assert billed_cost(billed) == charged
