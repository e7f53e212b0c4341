"""Model names upstreams list (`models:` of an OpenAI-compatible upstream, `deployments:` of an
Azure one) → `runtime.Alias` by the name clients use, with the checks that span sections: each
name on one upstream only, each priced, each section on the kind of upstream it belongs to."""

from __future__ import annotations

from collections.abc import Callable, Mapping

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
            if price_for(price) is None:
                report(loc, f"{name!r} is priced as {price!r}, which `models:` does not list")
            aliases[name] = Alias(upstream_name, send, price)
    return aliases


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
