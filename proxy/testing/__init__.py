"""A fake provider and the in-process stack: shipped, because `cycles-proxy demo` runs on
them (and tests and benchmarks use them too)."""
