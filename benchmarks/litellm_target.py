"""LiteLLM's proxy, the popular Python gateway, as an optional target (`--with-litellm`).

It is installed with pip (`litellm[proxy]`) into a virtual environment of its own under
benchmarks/results/ (ignored by git), never into the project's: its pins would fight ours. The
first run installs it (a minute or two, PyPI must be reachable); later runs reuse it.

The harness writes its config.yaml: gpt-4o-mini routed to the fake provider as an
OpenAI-compatible backend, a master key equal to the load generator's bearer key (LiteLLM
refuses to start without one, and then checks it on every call, as it does in production), no
database, no callbacks, and its own logging (uvicorn's access line per call included) at its
default. LITELLM_LOCAL_MODEL_COST_MAP keeps it from fetching its price list from GitHub at start
(offline it falls back to the bundled copy anyway, after retries). It serves with its default
server (uvicorn, one worker process), pinned to the proxy core like cycles-proxy, under the
same load.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

HERE = Path(__file__).resolve().parent
VENV = HERE / "results" / "litellm-venv"
REQUIREMENT = "litellm[proxy]"
MASTER_KEY = "sk-bench-client"
"""The bearer key the load generator sends (load.scope_headers)."""
HEALTH = "/health/liveliness"
START_SECONDS = 180.0
"""It imports for 10-30 s on one core before it answers (more on a busy machine)."""
ENV = {"LITELLM_LOCAL_MODEL_COST_MAP": "True"}
MODEL = "gpt-4o-mini"
PROVIDER_KEY = "sk-bench-provider"


def binary() -> Path:
    return VENV / "bin" / "litellm"


def install(log_dir: Path) -> str:
    """LiteLLM's proxy in its own venv (installed once); returns its version."""
    python = VENV / "bin" / "python"
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / "litellm-install.log").open("ab") as log:
        if not python.exists():
            print(f"  creating {VENV}", file=sys.stderr)
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, stdout=log)
        if not binary().exists():
            print(f"  pip install '{REQUIREMENT}' into {VENV} (once)", file=sys.stderr)
            pip = [str(python), "-m", "pip", "install", "--quiet", REQUIREMENT]
            subprocess.run(pip, check=True, stdout=log, stderr=subprocess.STDOUT)
    found = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        check=True,
        capture_output=True,
        text=True,
    )
    return found.stdout.strip()


def write_config(upstream: str, directory: Path) -> Path:
    """LiteLLM's config.yaml (JSON is YAML) routing the benchmark's model to `upstream`."""
    config = {
        "model_list": [
            {
                "model_name": MODEL,
                "litellm_params": {
                    "model": f"openai/{MODEL}",
                    "api_base": upstream + "/v1",
                    "api_key": PROVIDER_KEY,
                },
            }
        ],
        "general_settings": {"master_key": MASTER_KEY},
    }
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "litellm-config.yaml"
    path.write_bytes(orjson.dumps(config, option=orjson.OPT_INDENT_2) + b"\n")
    return path


def argv(config: Path, port: int) -> list[str]:
    return [str(binary()), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]


def unavailable(why: str) -> dict[str, object]:
    """What the results keep when LiteLLM could not be measured."""
    return {"measured": False, "why": why}


def available(version: str) -> dict[str, object]:
    return {"measured": True, "version": version, "requirement": REQUIREMENT}
