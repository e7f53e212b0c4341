"""What a valid policy allows that an operator most likely did not mean: warnings that
`cycles-proxy check` prints and `serve` logs at every load and reload. Nothing here refuses a
policy (the loader refuses what cannot be meant at all, such as a trusted range holding every
address).
"""

from __future__ import annotations

from proxy.policy.features import published_image_factor
from proxy.policy.runtime import Plan, Policy

WIDEST_TRUSTED = {4: 16, 6: 48}
"""Prefix lengths past which a trusted_proxies range is more than one site's proxies: a range
that wide (a /8 of a cluster network, say) holds callers too."""


def warnings(policy: Policy) -> list[str]:
    """One sentence per thing to look at, naming the field and what to write instead."""
    return _trusted_proxies(policy) + _image_factors(policy) + _unbudgeted_tools(policy)


def budgets_unit(plan: Plan, unit: str) -> bool:
    """Whether the plan budgets `unit` on some level: USD among its call budgets, an action
    unit among its action budgets. A tool priced in a unit its plan does not budget is refused
    (`unbudgeted`), as the reservation API refuses such an ask (unit_not_budgeted)."""
    budgets = plan.budgets if unit == "USD" else plan.action_budgets
    return any(b.unit == unit for b in budgets)


def _unbudgeted_tools(policy: Policy) -> list[str]:
    """A plan that does not budget a unit tools are priced in: those tools are refused for
    every tenant on it."""
    found = []
    for plan in policy.plans.values():
        units = dict.fromkeys(p.unit for p in policy.tool_prices)
        for unit in [u for u in units if not budgets_unit(plan, u)]:
            keys = ", ".join(p.key for p in policy.tool_prices if p.unit == unit)
            section = "budgets" if unit == "USD" else "action_budgets"
            found.append(
                f"plan {plan.name} does not budget {unit}: tools priced in it ({keys}) are "
                f"refused for its tenants. Add a {unit} budget to plans.{plan.name}.{section} "
                "if they should run."
            )
    return found


def _image_factors(policy: Policy) -> list[str]:
    """A written `image_token_factor` below the one published for the model (OpenAI's tile
    rule, Claude's): its image inputs would be reserved below what the provider bills for them.
    (An alias is reserved by the image rule of the model it is sent as: aliases.py; `check`
    shows it on the alias's line.)"""
    found = []
    for price in policy.models.values():
        published = published_image_factor(price.name)
        factor = price.image_token_factor
        if published is not None and factor is not None and factor < published:
            found.append(
                f"models.{price.name}.image_token_factor: {float(factor):g} is below the "
                f"{float(published):.4g} the published image rule for {price.name} bills, so its "
                f"image inputs are reserved below their cost. Write at least "
                f"{float(published):.4g}, or leave it out for the published one."
            )
    return found


def _trusted_proxies(policy: Policy) -> list[str]:
    return [
        f"trusted_proxies: {network} is wider than /{WIDEST_TRUSTED[network.version]}. Every "
        f"address in it may name, in {policy.forwarded_header}, the client its failed "
        "authentications are counted under, so a caller inside it (a pod reaching the "
        "gateway's Service directly) escapes the per-address limit. List only the addresses "
        "of your ingress or load balancer."
        for network in policy.trusted_proxies
        if network.prefixlen < WIDEST_TRUSTED[network.version]
    ]
