"""The `cycles-proxy` commands: serve, demo and the admin commands."""
