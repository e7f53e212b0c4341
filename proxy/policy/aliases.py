"""Model names upstreams list (`models:` of an OpenAI-compatible upstream, `deployments:` of an
Azure one) → `runtime.Alias` by the name clients use, with the checks that span sections: each
name on one upstream only, each priced, each section on the kind of upstream it belongs to.

An alias is priced by its `price:` entry, but the provider counts its images by the rule of the
model it serves, so the alias gets a price of its own (`Alias.served`) where its image factor
differs from the entry's: `_image_factor` says which applies."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from fractions import Fraction

from proxy.policy.features import published_image_factor
from proxy.policy.prices import ModelPrice, snapshot_of
from proxy.policy.spec import PolicySpec
from proxy.policy.spec_upstreams import AliasSpec
from proxy.policy.upstreams import Alias

Loc = tuple[str | int, ...]
Report = Callable[[Loc, str], None]


def compile_aliases(
    spec: PolicySpec, price_for: Callable[[str], ModelPrice | None], report: Report
) -> dict[str, Alias]:
    aliases: dict[str, Alias] = {}
    for upstream_name, upstream in spec.upstreams.items():
        here: Loc = ("upstreams", upstream_name)
        if upstream.kind == "azure" and upstream.models:
            report((*here, "models"), "an Azure upstream names its models by `deployments:`")
        if upstream.kind != "azure" and (upstream.deployments or upstream.api_version):
            field = "deployments" if upstream.deployments else "api_version"
            report((*here, field), f"{field} is for `kind: azure` upstreams only")
        for name, alias in _written(upstream.models, upstream.deployments).items():
            loc: Loc = (*here, "deployments" if upstream.kind == "azure" else "models", name)
            taken = aliases.get(name)
            if taken is not None:
                report(loc, f"{name!r} is already a model name of upstream {taken.upstream!r}")
                continue
            send, price = _resolved(name, alias)
            entry = price_for(price)
            if entry is None:
                report(loc, f"{name!r} is priced as {price!r}, which `models:` does not list")
            # An Azure deployment's name is the operator's; the model it serves is its entry's.
            served = _served(spec, send, entry, deployed=name in upstream.deployments)
            aliases[name] = Alias(upstream_name, send, price, served)
    return aliases


def _served(
    spec: PolicySpec, send: str, entry: ModelPrice | None, *, deployed: bool
) -> ModelPrice | None:
    """The price of calls sent as `send` when it is not `entry` as written: the entry with the
    image factor of the model served (`_image_factor`), where that differs."""
    if entry is None:
        return None
    written = spec.models[entry.name].image_token_factor if entry.name in spec.models else None
    factor = _image_factor(
        send, entry, None if written is None else Fraction(written), same=deployed
    )
    if factor == entry.image_token_factor:
        return None
    return dataclasses.replace(entry, image_token_factor=factor)


def _image_factor(
    send: str, entry: ModelPrice, written: Fraction | None, *, same: bool
) -> Fraction | None:
    """The image factor of calls sent as `send` and priced at `entry`, `written` the factor the
    policy writes on the entry (the entry's own is that, else the one published for its name).

    The provider counts images by the rule of the model it serves. The same model as the entry
    (or a dated snapshot of it) takes the entry's factor, raised to the one published for
    `send` (a deployment named as another model). Another model (Claude Opus 4.7 priced as Opus
    4.6, a model released after the published table priced as its predecessor) takes its own
    published factor, never below a written one; else the written one, the operator's word;
    else none, and its images are refused: the entry's published factor is its own model's
    rule, not the served model's. Derived once here, not per call."""
    published = published_image_factor(send)
    if same or (snapshot_of(send) or send) == (snapshot_of(entry.name) or entry.name):
        factor = entry.image_token_factor
        if published is None or (factor is not None and factor >= published):
            return factor
        return published
    if published is None:
        return written
    return published if written is None else max(published, written)


def _written(
    models: Mapping[str, str | AliasSpec], deployments: Mapping[str, str]
) -> dict[str, str | AliasSpec]:
    """Both sections as {name: alias}: a deployment is sent as itself, priced as its model."""
    return {**models, **{name: AliasSpec(price=model) for name, model in deployments.items()}}


def _resolved(name: str, alias: str | AliasSpec) -> tuple[str, str]:
    """(name sent upstream, model priced as); a string is the upstream's own name."""
    if isinstance(alias, str):
        return alias, name
    return alias.send or name, alias.price or name
