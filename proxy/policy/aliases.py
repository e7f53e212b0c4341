"""Model names upstreams list (`models:` of an OpenAI-compatible upstream, `deployments:` of an
Azure one) → `runtime.Alias` by the name clients use, with the checks that span sections: each
name on one upstream only, each priced, each section on the kind of upstream it belongs to.

An alias is priced by its `price:` entry, but the provider counts its images by the rule of the
model it is sent as: where that model's published image factor is higher than the entry's, the
alias gets a price of its own with that factor (`Alias.served`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from proxy.policy.features import published_image_factor
from proxy.policy.prices import ModelPrice
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
            aliases[name] = Alias(upstream_name, send, price, _served(send, entry))
    return aliases


def _served(send: str, entry: ModelPrice | None) -> ModelPrice | None:
    """The price of calls sent as `send` when it is not `entry` as written: the provider counts
    images by the rule of the model it serves, so an alias whose served model publishes a
    higher image factor than its price entry gives (Claude Opus 4.7 priced as Opus 4.6) is
    reserved at the served model's. Derived once here, not per call."""
    published = published_image_factor(send)
    if entry is None or published is None:
        return None
    factor = entry.image_token_factor
    if factor is not None and factor >= published:
        return None
    return dataclasses.replace(entry, image_token_factor=published)


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
