"""Unmodified client libraries pass the closed world of request fields (`request_fields:
strict`, the default): the openai SDK on every budgeted endpoint, the anthropic SDK, LangChain's
ChatOpenAI and ChatAnthropic, and an OpenAI Agents SDK run that calls a function tool. Each call
is charged what the fake provider billed, within what was reserved."""

from __future__ import annotations

from pathlib import Path

import anthropic
import openai
from fields_support import HEADERS, books, fields_policy

from proxy.testing.fake_openai import WORD
from proxy.testing.local import Stack, local_stack


async def assert_every_call_within_its_reservation(stack: Stack, calls: int) -> None:
    assert len(stack.fake.billed) == calls
    for call in await books(stack):
        assert call.billed == call.charged <= call.reserved


def sdk(stack: Stack) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=stack.url + "/v1", api_key="unused", default_headers=HEADERS, max_retries=0
    )


async def test_openai_sdk_on_every_endpoint_whole_and_streamed(
    tmp_path: Path, store_url: str
) -> None:
    messages = [{"role": "user", "content": "Say hi"}]
    async with local_stack(fields_policy(tmp_path), store=store_url) as stack:
        async with sdk(stack) as client:
            chat = await client.chat.completions.create(
                model="gpt-4o-mini", messages=messages, max_completion_tokens=5
            )  # type: ignore[arg-type]
            assert chat.choices[0].message.content == WORD * 5
            stream = await client.chat.completions.create(
                model="gpt-4o-mini",
                messages=messages,  # type: ignore[arg-type]
                max_tokens=5,
                stream=True,
                stream_options={"include_usage": True},
            )
            assert [c async for c in stream][-1].usage is not None
            text = await client.completions.create(
                model="gpt-3.5-turbo-instruct", prompt=["Say hi", "Say bye"], max_tokens=5
            )
            assert len(text.choices) == 2
            stream = await client.completions.create(
                model="gpt-3.5-turbo-instruct", prompt="Say hi", max_tokens=5, stream=True
            )
            assert "".join([c.choices[0].text async for c in stream]) == WORD * 5
            vectors = await client.embeddings.create(
                model="text-embedding-3-small", input=["Say hi", "Say bye"]
            )
            assert len(vectors.data) == 2
            answer = await client.responses.create(
                model="gpt-4o-mini", input="Say hi", instructions="Be terse.", max_output_tokens=5
            )
            assert answer.output_text == WORD * 5
            events = await client.responses.create(
                model="gpt-4o-mini", input="Say hi", max_output_tokens=5, stream=True
            )
            assert [e.type async for e in events][-1] == "response.completed"
        await assert_every_call_within_its_reservation(stack, 7)


async def test_anthropic_sdk_whole_and_streamed(tmp_path: Path, store_url: str) -> None:
    messages = [{"role": "user", "content": "Say hi"}]
    async with (
        local_stack(fields_policy(tmp_path), store=store_url) as stack,
        anthropic.AsyncAnthropic(
            base_url=stack.url, api_key="unused", default_headers=HEADERS, max_retries=0
        ) as client,
    ):
        message = await client.messages.create(
            model="claude-sonnet-4",
            max_tokens=5,
            system="Be terse.",
            messages=messages,  # type: ignore[arg-type]
            metadata={"user_id": "u-7"},
            stop_sequences=["\n\n"],
        )
        assert message.content[0].text == WORD * 5  # type: ignore[union-attr]
        async with client.messages.stream(
            model="claude-sonnet-4",
            max_tokens=5,
            messages=messages,  # type: ignore[arg-type]
        ) as stream:
            assert await stream.get_final_text() == WORD * 5
        await assert_every_call_within_its_reservation(stack, 2)


async def test_langchain_chat_openai_invoke_and_stream(tmp_path: Path, store_url: str) -> None:
    from langchain_openai import ChatOpenAI

    async with (
        local_stack(fields_policy(tmp_path), store=store_url) as stack,
        openai.DefaultAsyncHttpxClient() as http,
    ):
        model = ChatOpenAI(
            model="gpt-4o-mini",
            base_url=stack.url + "/v1",
            api_key="unused",  # type: ignore[arg-type]
            default_headers=HEADERS,
            max_completion_tokens=5,
            temperature=0.2,
            max_retries=0,
            http_async_client=http,
        )
        reply = await model.ainvoke("Say hi")
        assert reply.content == WORD * 5
        chunks = [chunk.content async for chunk in model.astream("Say hi")]
        assert "".join(str(c) for c in chunks) == WORD * 5
        await assert_every_call_within_its_reservation(stack, 2)


async def test_langchain_chat_anthropic_invoke(tmp_path: Path, store_url: str) -> None:
    from langchain_anthropic import ChatAnthropic
    from langchain_anthropic._client_utils import _get_default_async_httpx_client

    async with local_stack(fields_policy(tmp_path), store=store_url) as stack:
        model = ChatAnthropic(  # type: ignore[call-arg]
            model="claude-sonnet-4",
            base_url=stack.url,
            api_key="unused",  # type: ignore[arg-type]
            default_headers=HEADERS,
            max_tokens=5,
            temperature=0.2,
            max_retries=0,
        )
        try:
            reply = await model.ainvoke("Say hi")
        finally:
            # ChatAnthropic keeps its HTTP client per base URL, for the process: close it.
            await model._async_client.close()
            _get_default_async_httpx_client.cache_clear()
        assert reply.content == WORD * 5
        await assert_every_call_within_its_reservation(stack, 1)


async def test_openai_agents_sdk_runs_an_agent_that_calls_a_function_tool(
    tmp_path: Path, store_url: str
) -> None:
    from agents import Agent, ModelSettings, OpenAIResponsesModel, RunConfig, Runner, function_tool

    called: list[str] = []

    @function_tool
    def current_time() -> str:
        """The time now."""
        called.append("current_time")
        return "noon"

    async with local_stack(fields_policy(tmp_path), store=store_url) as stack:
        async with sdk(stack) as client:
            agent = Agent(
                name="clock",
                instructions="Answer with the time.",
                model=OpenAIResponsesModel(model="gpt-4o-mini", openai_client=client),
                model_settings=ModelSettings(max_tokens=5),
                tools=[current_time],
            )
            result = await Runner.run(
                agent, "What time is it?", run_config=RunConfig(tracing_disabled=True)
            )
        assert called == ["current_time"]
        assert result.final_output == WORD * 5
        sent = [body for _, _, body in stack.fake.requests]
        assert sent[1]["input"][-1]["type"] == "function_call_output"
        await assert_every_call_within_its_reservation(stack, 2)
