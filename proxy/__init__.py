"""cycles-proxy: a budget authority for LLM calls that sits in the request path."""

__version__ = "0.1.0"
