"""Policies: YAML on disk (`loader`, `yamlfile`) → what the operator wrote (`spec`) → the checked
runtime form the proxy consults (`runtime`), by way of `schema.compile_policy`."""

from pathlib import Path

from proxy.policy.describe import describe
from proxy.policy.loader import load_policy
from proxy.policy.runtime import Policy

EXAMPLE = Path(__file__).resolve().parent / "example.yaml"
"""The commented example policy, shipped as package data: the demo runs on it and
`cycles-proxy example-policy` prints it."""

__all__ = ["EXAMPLE", "Policy", "describe", "load_policy"]
