"""The console script: check, serve's refusals, and the demo."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import POLICIES


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args], capture_output=True, text=True, timeout=120
    )


def test_check_prints_what_the_example_policy_enforces() -> None:
    result = cli("check", "--policy", str(POLICIES / "example.yaml"))
    assert result.returncode == 0, result.stderr
    assert "customer-47" in result.stdout and "pro" in result.stdout


def test_check_names_file_line_and_field_of_a_broken_policy(tmp_path: Path) -> None:
    text = (POLICIES / "example.yaml").read_text()
    lines = text.splitlines()
    index = next(
        i for i, line in enumerate(lines) if line.strip().startswith("tenant:") and "limit" in line
    )
    lines[index] = lines[index].replace("limit:", "limitt:")
    broken = tmp_path / "broken.yaml"
    broken.write_text("\n".join(lines) + "\n")
    result = cli("check", "--policy", str(broken))
    assert result.returncode == 2
    assert f"broken.yaml:{index + 1}:" in result.stderr
    assert "limitt" in result.stderr


def test_check_warns_of_trusted_proxy_ranges_wider_than_a_sites_proxies(tmp_path: Path) -> None:
    """A trusted range wider than /16 (IPv4) or /48 (IPv6) lets the callers inside it name the
    address they are counted under: check says so, naming each such range, and still passes."""
    text = (POLICIES / "example.yaml").read_text()
    wide = '["10.0.0.0/8", "10.1.2.0/24", "2001:db8::/32", "2001:db8:1::/48"]'
    assert text.count("trusted_proxies: []") == 1
    policy = tmp_path / "policy.yaml"
    policy.write_text(text.replace("trusted_proxies: []", f"trusted_proxies: {wide}"))
    result = cli("check", "--policy", str(policy))
    assert result.returncode == 0, result.stderr
    warned = [line for line in result.stdout.splitlines() if line.startswith("WARNING")]
    assert len(warned) == 2, result.stdout
    assert "10.0.0.0/8 is wider than /16" in warned[0]
    assert "2001:db8::/32 is wider than /48" in warned[1]
    assert "ingress" in warned[0]
    assert "WARNING" not in cli("check", "--policy", str(POLICIES / "example.yaml")).stdout


def test_serve_refuses_memory_store_with_several_workers() -> None:
    result = cli("serve", "--policy", str(POLICIES / "example.yaml"), "--workers", "2")
    assert result.returncode == 2
    assert "memory://" in result.stderr and "--workers" in result.stderr


def test_serve_refuses_header_identity_on_a_public_address() -> None:
    result = cli("serve", "--policy", str(POLICIES / "example.yaml"), "--listen", "0.0.0.0:8080")
    assert result.returncode == 2
    assert "identity: header" in result.stderr


def test_serve_names_the_listen_flag_it_cannot_read() -> None:
    args = ["--policy", str(POLICIES / "example.yaml"), "--metrics-listen", "127.0.0.1:http"]
    result = cli("serve", *args)
    assert result.returncode == 2
    assert "--metrics-listen '127.0.0.1:http': use HOST:PORT" in result.stderr


@pytest.mark.timeout(120)
def test_demo_stops_the_runaway_tenant_and_spares_the_others() -> None:
    result = cli("demo", "--tenants", "60")
    assert result.returncode == 0, result.stderr
    assert "customer-47 stopped at its budget:      yes" in result.stdout
    assert "other tenants all allowed, in budget:   yes" in result.stdout
    report = result.stdout.split("limit report (cycles-proxy report --since 30d)", 1)[1]
    lines = {line.split()[0]: line.split() for line in report.splitlines()[2:] if line.strip()}
    runaway, quiet = lines["customer-47"], lines["customer-1"]
    # One day of history: the report keeps each limit rather than extrapolate a month from it.
    assert runaway[1:3] == ["tenant", "customer-47"] and "too-little-history" in runaway
    assert quiet[1:3] == ["tenant", "customer-1"] and "too-little-history" in quiet


def test_example_policy_prints_the_policy_the_demo_runs_on(tmp_path: Path) -> None:
    result = cli("example-policy")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (POLICIES / "example.yaml").read_text()
    copy = tmp_path / "policy.yaml"
    copy.write_text(result.stdout)
    assert cli("check", "--policy", str(copy)).returncode == 0
