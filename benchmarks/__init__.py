"""Benchmarks of cycles-proxy against a bare aiohttp passthrough (see README.md here)."""
