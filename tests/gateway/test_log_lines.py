"""How log lines reach the stream: an event-loop iteration's lines together, in writes a shared
pipe keeps whole, in order, none lost."""

from __future__ import annotations

import asyncio
import io
import logging
import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path

import aiohttp
import orjson
import pytest
from support import chat, policy, printed, proxy_in_front_of

from proxy.gateway import logs
from proxy.gateway.logs import (
    JSON_OBJECT,
    JsonFormatter,
    LineBuffer,
    RedactingFilter,
    TextFormatter,
)
from proxy.testing.fake_upstream import FakeUpstream


class Writes(io.StringIO):
    """A stream that counts its writes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def logger_to(stream: io.StringIO) -> tuple[logging.Logger, LineBuffer]:
    handler = LineBuffer(stream)
    logger = logging.Logger("lines")
    logger.addHandler(handler)
    return logger, handler


async def test_the_lines_of_one_loop_iteration_go_out_in_one_write_after_it() -> None:
    stream = Writes()
    logger, _ = logger_to(stream)
    for n in range(3):
        logger.info("line %d", n)
    assert stream.getvalue() == ""
    await asyncio.sleep(0)
    assert (stream.getvalue(), stream.writes) == ("line 0\nline 1\nline 2\n", 1)


def test_a_line_logged_with_no_loop_running_is_written_at_once_after_those_buffered() -> None:
    stream = Writes()
    logger, _ = logger_to(stream)
    loop = asyncio.new_event_loop()
    try:
        # The loop stops before the flush this line scheduled can run.
        loop.call_soon(lambda: (logger.info("in the loop"), loop.stop()))
        loop.run_forever()
        assert stream.getvalue() == ""
        logger.info("after it")
        assert stream.getvalue() == "in the loop\nafter it\n"
    finally:
        loop.close()


def test_flush_writes_what_the_root_logger_still_buffers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """serve calls it as its process ends: a forked worker exits without logging's own flush."""
    stream = Writes()
    handler = LineBuffer(stream)
    monkeypatch.setattr(logging.getLogger(), "handlers", [handler])
    loop = asyncio.new_event_loop()
    try:
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "last words", (), None)
        loop.call_soon(lambda: (handler.handle(record), loop.stop()))
        loop.run_forever()
    finally:
        loop.close()
    assert stream.getvalue() == ""
    logs.flush()
    assert stream.getvalue() == "last words\n"


def test_setting_up_logging_again_first_writes_what_the_old_handler_holds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = logging.getLogger()
    for name in ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing"):
        monkeypatch.setattr(logging, name, getattr(logging, name))
    stream = Writes()
    handler = LineBuffer(stream)
    monkeypatch.setattr(root, "handlers", [handler])
    loop = asyncio.new_event_loop()
    try:
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "before the switch", (), None)
        loop.call_soon(lambda: (handler.handle(record), loop.stop()))
        loop.run_forever()
    finally:
        loop.close()
    level = root.level
    try:
        logs.setup_logging("INFO", "text")
    finally:
        root.setLevel(level)  # which also clears the loggers' cached levels
    assert stream.getvalue() == "before the switch\n"


class Broken(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError("the reader went away")


async def test_a_write_that_fails_is_reported_once_and_logging_goes_on(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    logger, handler = logger_to(Broken())
    monkeypatch.setattr(logging.getLogger(), "handlers", [handler])
    logger.info("lost")
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert capsys.readouterr().err.count("--- Logging error ---") == 1
    handler.setStream(Writes())
    logger.info("after it")
    await asyncio.sleep(0)
    assert handler.stream.getvalue() == "after it\n"


def test_a_json_object_message_is_spliced_into_the_json_line_unless_redaction_cut_it() -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    spliced = logging.makeLogRecord(
        {"name": "cycles.calls", "msg": '{"event":"call","ts":"x"}', JSON_OBJECT: True}
    )
    assert handler.filter(spliced)
    # Spliced as it is: a key the line already has stays twice (the call line has none).
    assert handler.format(spliced).endswith('"logger":"cycles.calls","event":"call","ts":"x"}')
    cut = logging.makeLogRecord(
        {"name": "cycles.calls", "msg": '{"model":"authorization=ab\\"c"}', JSON_OBJECT: True}
    )
    assert handler.filter(cut)
    # Quoted as a message, not spliced: the cut may have left the object unbalanced.
    assert '"message":"{\\"model\\":' in handler.format(cut)


def test_each_line_has_its_own_time_though_the_seconds_are_formatted_once() -> None:
    text, json = TextFormatter(), JsonFormatter()
    for created in (1000.5, 1000.75, 1001.25):
        record = logging.makeLogRecord(
            {"msg": "m", "created": created, "msecs": created % 1 * 1000}
        )
        local = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created))
        utc = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
        millis = f"{int(created % 1 * 1000):03d}"
        assert text.format(record).startswith(f"{local},{millis} ")
        assert orjson.loads(json.format(record))["ts"] == f"{utc}.{millis}Z"


@pytest.mark.timeout(90)
async def test_every_call_line_is_written_before_the_workers_exit(
    tmp_path: Path, redis_url: str
) -> None:
    policy(tmp_path, "tenant: {limit: 50, period: month}")
    ids = [f"shutdown-{n}" for n in range(12)]
    args = ("--workers", "2", "--log-format", "json")
    async with proxy_in_front_of(FakeUpstream(), tmp_path / "policy.yaml", redis_url, 5, *args) as (
        url,
        proc,
    ):
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            for rid in ids:
                headers = {"X-Cycles-Tenant": "alpha", "X-Request-Id": rid}
                async with session.post(
                    url + "/v1/chat/completions", json=chat(), headers=headers
                ) as r:
                    assert r.status == 200
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        lines = [orjson.loads(t) for t in printed(proc).splitlines() if t.startswith("{")]
    assert sorted(line["request_id"] for line in lines if line.get("event") == "call") == sorted(
        ids
    )
    messages = [line["message"] for line in lines if "message" in line]
    assert sum(m.startswith("stopped: every call settled") for m in messages) == 2  # each worker


class Chunks(io.StringIO):
    """A stream that keeps each write."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[str] = []

    def write(self, text: str) -> int:
        self.chunks.append(text)
        return super().write(text)


async def test_an_iterations_lines_go_out_in_writes_a_pipe_keeps_whole() -> None:
    stream = Chunks()
    logger, _ = logger_to(stream)
    lines = [f"{n:03d} " + "é" * 150 for n in range(80)] + ["long " + "x" * 5000, "last"]
    for text in lines:
        logger.info(text)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert stream.getvalue() == "".join(text + "\n" for text in lines)
    sizes = [len(chunk.encode()) for chunk in stream.chunks]
    assert all(chunk.endswith("\n") for chunk in stream.chunks)
    assert [chunk for chunk in stream.chunks if len(chunk.encode()) > logs.PIPE_BUF] == [
        "long " + "x" * 5000 + "\n"
    ]
    assert max(sizes[:-2]) > logs.PIPE_BUF - 400 and len(stream.chunks) < 20, sizes


def _worker(write_fd: int, name: str) -> None:
    """A `--workers` process: stderr is the shared pipe, several call lines per iteration."""
    os.dup2(write_fd, 2)
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", closefd=False)  # noqa: SIM115
    logs.setup_logging("INFO", "json")
    calls = logging.getLogger("cycles.calls")

    async def main() -> None:
        for i in range(10):
            for k in range(60):
                line = {"event": "call", "worker": name, "n": i * 60 + k, "model": "x" * 300}
                calls.info(orjson.dumps(line).decode(), extra={JSON_OBJECT: True})
            await asyncio.sleep(0)

    try:
        asyncio.run(main())
    finally:
        logs.flush()
    os._exit(0)


def test_lines_of_workers_sharing_a_pipe_never_interleave() -> None:
    read_fd, write_fd = os.pipe()
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_worker, args=(write_fd, f"w{i}")) for i in range(3)]
    for worker in workers:
        worker.start()
    os.close(write_fd)
    chunks = []
    while chunk := os.read(read_fd, 512):  # a slow reader: the pipe stays full
        chunks.append(chunk)
        time.sleep(0.0002)
    os.close(read_fd)
    for worker in workers:
        worker.join(10)
    lines = b"".join(chunks).decode(errors="replace").splitlines()
    calls = [orjson.loads(line) for line in lines]  # a line cut by another's raises here
    assert len([c for c in calls if c.get("event") == "call"]) == 3 * 10 * 60


def test_a_line_the_stream_cannot_encode_is_replaced_and_the_others_written(
    capsys: pytest.CaptureFixture[str],
) -> None:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii", errors="strict")
    handler = LineBuffer(stream)
    logger = logging.Logger("lines")
    logger.addHandler(handler)

    async def main() -> None:
        logger.info("call A settled")
        logger.warning("unknown model 'modèle'")
        logger.info("call B settled")
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    asyncio.run(main())
    assert raw.getvalue() == b"call A settled\nunknown model 'mod?le'\ncall B settled\n"
    assert capsys.readouterr().err.count("--- Logging error ---") == 1
