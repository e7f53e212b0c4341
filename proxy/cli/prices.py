"""`cycles-proxy prices import|diff`: a policy's `models:` from a public price catalogue
(LiteLLM's `model_prices_and_context_window.json`, a Portkey `pricing/<provider>.json`), and
the differences between a policy's prices and a catalogue's.

`import` prints a `models:` block (or writes it to a new file with `--output`: a policy directory
merges every *.yaml in it, so the rest of the policy stays as written); what the catalogue
prices that the policy cannot say goes to stderr, one line per model. `diff` exits 0 when the
prices agree, 1 when they differ (for CI), and 2 on bad input, as every command does.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from proxy.core.errors import CatalogueError
from proxy.policy import load_policy
from proxy.policy.catalogue import (
    NO_TOKEN_PRICES,
    Imported,
    Listing,
    build,
    parse_json,
    patterns,
    render,
    selected,
)
from proxy.policy.catalogue_litellm import listings as litellm_listings
from proxy.policy.catalogue_portkey import listings as portkey_listings
from proxy.policy.price_diff import price_diff, unpriced_count

FORMATS: Mapping[str, tuple[str, Callable[[Mapping[str, Any]], Iterator[Listing]]]] = {
    "litellm": ("LiteLLM's model_prices_and_context_window.json", litellm_listings),
    "portkey": ("Portkey's pricing/<provider>.json", portkey_listings),
}


def add_parser(commands: Any) -> None:
    prices = commands.add_parser(
        "prices", help="write model prices from a public catalogue, or compare a policy's with one"
    )
    sub = prices.add_subparsers(dest="prices_command", required=True)
    imports = sub.add_parser("import", help="print the policy's models: entries from a catalogue")
    diff = sub.add_parser(
        "diff", help="list prices that differ between a policy and a catalogue (exit 1 if any)"
    )
    for parser in (imports, diff):
        parser.add_argument("file", help="the catalogue file (JSON)")
        parser.add_argument("--format", required=True, choices=sorted(FORMATS))
        parser.add_argument(
            "--models", help="comma-separated globs of model names, e.g. 'gpt-4o*,claude-*'"
        )
    imports.add_argument("--output", help="write to this new file instead of stdout")
    diff.add_argument("--policy", required=True, help="policy file or directory")


def run(args: argparse.Namespace) -> int:
    globs = patterns(args.models)
    catalogue = _read(Path(args.file), args.format, globs)
    if args.prices_command == "import":
        return _import(args, catalogue, globs)
    return _diff(args, catalogue, globs)


def _read(path: Path, form: str, globs: tuple[str, ...]) -> list[Imported]:
    """The catalogue's models that `globs` select, built; CatalogueError if there are none."""
    try:
        data = parse_json(path.read_text(encoding="utf-8-sig"), str(path))
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogueError(f"{path}: cannot read the file: {exc}") from None
    described, listings = FORMATS[form]
    every = list(listings(data))
    if not any(_token_priced(listing) for listing in every):
        raise CatalogueError(
            f"{path}: no model with per-token prices as {described} writes them; is --format "
            f"{form} the file's format (one of {', '.join(sorted(FORMATS))})?"
        )
    chosen = [build(listing) for listing in every if selected(listing.name, globs)]
    if not chosen:
        raise CatalogueError(f"{path}: no model matches --models {','.join(globs)}")
    return chosen


def _token_priced(listing: Listing) -> bool:
    return listing.refused is None and {"input", "output"} <= listing.rates.keys()


def _import(args: argparse.Namespace, catalogue: list[Imported], globs: tuple[str, ...]) -> int:
    _report(catalogue, named=bool(globs))
    if not any(model.entry is not None for model in catalogue):
        raise CatalogueError(f"{args.file}: none of the models chosen could be imported")
    text = render(catalogue, _source(Path(args.file), args.format))
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        with open(args.output, "x", encoding="utf-8") as out:
            out.write(text)
    except FileExistsError:
        raise CatalogueError(
            f"{args.output} exists; name a new file (a policy directory loads every *.yaml in "
            "it, so the imported models can sit beside the rest of the policy)"
        ) from None
    except OSError as exc:
        raise CatalogueError(f"{args.output}: cannot write: {exc}") from None
    return 0


def _report(catalogue: Iterable[Imported], *, named: bool) -> None:
    """What the catalogue says that the policy cannot, to stderr. Entries without token prices
    (image, speech, rerank models) are counted unless models were named."""
    unpriced = 0
    for model in catalogue:
        if not named and model.refused == NO_TOKEN_PRICES:
            unpriced += 1
            continue
        left_out = () if model.refused is None else (f"left out: {model.refused}",)
        for note in (*model.notes, *left_out):
            print(f"{model.name}: {note}", file=sys.stderr)
    if unpriced:
        print(f"entries without per-token prices, left out: {unpriced}", file=sys.stderr)


def _source(path: Path, form: str) -> str:
    """The catalogue as the imported block's comment names it: file, format, date, digest."""
    data = path.read_bytes()
    dated = datetime.fromtimestamp(path.stat().st_mtime, UTC).date().isoformat()
    digest = hashlib.sha256(data).hexdigest()[:12]
    return f"{path.name} ({FORMATS[form][0]}), dated {dated}, sha256 {digest}"


def _diff(args: argparse.Namespace, catalogue: list[Imported], globs: tuple[str, ...]) -> int:
    policy = load_policy(args.policy)
    found = price_diff(catalogue, policy.models, globs)
    for category, model, what in found:
        print(f"{category:8} {model}: {what}")
    if not globs:
        extra = unpriced_count(catalogue, policy.models)
        if extra:
            print(
                f"{extra} catalogue models are not in the policy; name them with --models to "
                "list them",
                file=sys.stderr,
            )
    if not found:
        print(f"the policy's prices agree with {Path(args.file).name}")
    return 1 if found else 0
