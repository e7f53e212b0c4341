"""Policies: YAML on disk (`loader`, `yamlfile`) → what the operator wrote (`spec`) → the checked
runtime form the proxy consults (`runtime`), by way of `schema.compile_policy`."""

from proxy.policy.describe import describe
from proxy.policy.loader import load_policy
from proxy.policy.runtime import Policy

__all__ = ["Policy", "describe", "load_policy"]
