"""cycles-proxy: argument parsing only, then calls into the app."""

from __future__ import annotations

import argparse
import sys

from proxy.core.errors import CyclesError


def command_line() -> argparse.ArgumentParser:
    """The command line: `cycles-proxy serve|check|example-policy|demo|report|admin|prices …`."""
    parser = argparse.ArgumentParser(
        prog="cycles-proxy", description="A budget authority for LLM calls."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the proxy")
    _where_options(serve)
    _connection_options(serve)
    _process_options(serve)

    check = commands.add_parser("check", help="validate a policy and print what it enforces")
    check.add_argument("--policy", required=True, help="policy file or directory")

    commands.add_parser("example-policy", help="print the commented example policy, to start from")

    demo = commands.add_parser("demo", help="replay the runaway-tenant story on the embedded store")
    demo.add_argument("--tenants", type=int, default=500)

    from proxy.cli import admin, prices, report

    report.add_parser(commands)
    admin.add_parser(commands)
    prices.add_parser(commands)
    return parser


def _where_options(serve: argparse.ArgumentParser) -> None:
    """`serve`: the policy, the store, the upstream, and where each listener listens."""
    serve.add_argument("--policy", required=True, help="policy file or directory")
    serve.add_argument(
        "--listen",
        default="127.0.0.1:8080",
        help="HOST:PORT (default %(default)s); port 0 here or in --admin-listen and "
        "--metrics-listen binds any free port, named in the startup log line",
    )
    serve.add_argument(
        "--store",
        help="memory:// (default), redis://host:port/db or redis+cluster://host:port; "
        "env CYCLES_STORE",
    )
    serve.add_argument("--upstream", help="override every upstream's base URL (local fakes)")
    serve.add_argument("--workers", type=int, default=1, help="processes sharing the port")
    serve.add_argument(
        "--admin-listen",
        default="127.0.0.1:8081",
        help="HOST:PORT of the admin API, or 'off' (default %(default)s)",
    )
    serve.add_argument(
        "--metrics-listen",
        help="HOST:PORT of a listener serving only /metrics and /healthz, for Prometheus: a "
        "gateway never serves /metrics on its proxy port, and a sidecar's is loopback only; "
        "with $CYCLES_METRICS_TOKEN set, /metrics there asks for it as a bearer token",
    )
    serve.add_argument(
        "--allow-unauthenticated-metrics",
        action="store_true",
        help="let a gateway serve --metrics-listen on a non-loopback address without "
        "CYCLES_METRICS_TOKEN (a network policy admits only Prometheus to it)",
    )


def _connection_options(serve: argparse.ArgumentParser) -> None:
    """`serve`: what each listener's connections may hold."""
    serve.add_argument(
        "--max-connections",
        type=int,
        default=1024,
        help="places each listener holds at most: open connections, and calls still running "
        "for closed ones; at the bound an idle keep-alive connection is closed for a new one, "
        "else it is answered 503 (per process; default %(default)s)",
    )
    serve.add_argument(
        "--max-connections-per-peer",
        type=int,
        default=64,
        help="gateway: open connections one client address (an IPv6 client: its client_ipv6_prefix "
        "network) holds at most on each listener; beyond, 429; trusted_proxies are not "
        "counted (per process; default %(default)s)",
    )
    serve.add_argument(
        "--keep-alive-timeout",
        type=float,
        default=10.0,
        help="seconds an idle keep-alive connection is kept open after its last answer "
        "(default %(default)s; timeouts.read_request bounds a request's headers)",
    )


def _process_options(serve: argparse.ArgumentParser) -> None:
    """`serve`: logs, policy reloads, shutdown, and the safety checks at startup."""
    serve.add_argument("--log-level", default="INFO")
    serve.add_argument(
        "--log-format", choices=["text", "json"], help="default: $CYCLES_LOG_FORMAT, else text"
    )
    serve.add_argument(
        "--reload-every",
        type=float,
        default=2.0,
        help="seconds between checks of the policy files for changes; 0: off (default %(default)s)",
    )
    serve.add_argument(
        "--drain-timeout",
        type=float,
        default=30.0,
        help="seconds in-flight calls get to finish after SIGTERM (default %(default)s)",
    )
    serve.add_argument(
        "--sigterm",
        choices=["auto", "drain", "serve"],
        default="auto",
        help="drain: stop accepting at SIGTERM (gateway; a native sidecar, stopped after the "
        "app); serve: keep serving until --drain-timeout or POST /quitquitquit (a sidecar "
        "stopped with the app); auto: serve for identity: header, else drain (default)",
    )
    serve.add_argument(
        "--require-noeviction",
        action="store_true",
        help="refuse to start unless the Redis store's maxmemory-policy is noeviction",
    )
    serve.add_argument(
        "--allow-header-identity-on-public-address",
        action="store_true",
        help="let identity: header listen on a non-loopback address",
    )


def main(argv: list[str] | None = None) -> int:
    args = command_line().parse_args(argv)
    try:
        if args.command == "serve":
            from proxy.cli.serve import serve

            return serve(args)
        if args.command == "check":
            from proxy.policy import describe, load_policy

            print(describe(load_policy(args.policy)))
            return 0
        if args.command == "example-policy":
            from proxy.policy import EXAMPLE

            sys.stdout.write(EXAMPLE.read_text())
            return 0
        if args.command == "report":
            from proxy.cli.report import run as report

            return report(args)
        if args.command == "admin":
            from proxy.cli.admin import run

            return run(args)
        if args.command == "prices":
            from proxy.cli.prices import run as run_prices

            return run_prices(args)
        from proxy.cli.demo import run_demo

        return run_demo(tenants=args.tenants)
    except CyclesError as exc:
        print(f"cycles-proxy: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
