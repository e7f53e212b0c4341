"""What every layer uses and nothing here imports: errors, shared types, ids, background
tasks, token encodings, bounded tables and peer addresses.

Imports point down: core ← policy ← metering ← budget ← gateway ← actions/admin ← cli;
store imports only core (pyproject.toml's [tool.importlinter] contracts say so)."""
