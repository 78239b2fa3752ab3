"""The ``switchyard`` command: ``serve``, ``check-config``, ``migrate`` and ``admin``."""

from __future__ import annotations

import argparse
import logging
import sys

import msgspec

from proxy.cli_admin import add_commands
from proxy.settings import ConfigError, Settings, load_settings


def _auth_summary(settings: Settings) -> str:
    ways = []
    if settings.server.master_key:
        ways.append("master key")
    if keys := len([k for k in settings.server.api_keys if k]):
        ways.append(f"{keys} static api key(s)")
    if settings.auth.jwt is not None:
        ways.append(f"JWT from {settings.auth.jwt.issuer}")
    if not ways:
        return "off (every caller is in team default; virtual keys still count)"
    return ", ".join([*ways, "virtual keys"])


def _state_summary(settings: Settings) -> str:
    """The database (its password never shown) and where limits are counted."""
    from sqlalchemy.engine import make_url

    from proxy.state.engine import resolve_url

    url = resolve_url(
        settings.state.database,
        data_dir=settings.server.data_dir,
        base_dir=settings.base_dir,
        create=False,
    )
    shown = make_url(url).render_as_string(hide_password=True)
    counters = "redis" if settings.state.redis_url else "in process"
    return f"{shown}; limits counted {counters}"


def _telemetry_summary(settings: Settings) -> str:
    telemetry = settings.telemetry
    if telemetry.traces_url is None:
        return "tracing off"
    shown = telemetry.traces_url
    if "@" in shown:  # credentials in the URL's user part are never printed
        scheme, _, rest = shown.partition("://")
        shown = f"{scheme}://***@{rest.rpartition('@')[2]}"
    return f"traces to {shown} as {telemetry.service_name}, sampling {telemetry.sample_ratio:g}"


def _routing_table(settings: Settings) -> str:
    lines = [f"config: {settings.source}", f"listen: {settings.server.host}:{settings.server.port}"]
    lines.append(f"auth: {_auth_summary(settings)}")
    lines.append(f"state: {_state_summary(settings)}")
    server = settings.server
    lines.append(f"media: {settings.media.summary(server.data_dir, server.media_retention_s)}")
    lines.append(f"telemetry: {_telemetry_summary(settings)}")
    if settings.defaults:
        lines.append("built-in models: kept (a file entry of the same name replaces one)")
    if not settings.models:
        lines.append("models: none")
    for name in settings.model_names():
        lines.append(f"model {name}")
        for m in settings.models:
            if m.name != name:
                continue
            details = {
                k: v
                for k, v in msgspec.structs.asdict(m).items()
                if k not in {"name", "adapter", "api_key", "fallbacks", "headers"}
                and v not in (None, [], {})
            }
            shown = " ".join(f"{k}={v}" for k, v in details.items())
            lines.append(f"  -> {m.adapter}: {shown}")
        fallbacks = next(
            (m.fallbacks for m in settings.models if m.name == name and m.fallbacks), []
        )
        if fallbacks:
            lines.append(f"  fallbacks: {', '.join(fallbacks)}")
    for name, section in settings.sections.items():
        lines.append(f"section {name}: {_changed_fields(section) or 'defaults'}")
    return "\n".join(lines)


def _changed_fields(section: msgspec.Struct) -> str:
    """``field=value`` for each field that differs from the section's defaults."""
    defaults = msgspec.structs.asdict(type(section)())
    changed = {
        k: v
        for k, v in msgspec.structs.asdict(section).items()
        if v != defaults.get(k) and "key" not in k
    }
    return " ".join(f"{k}={msgspec.to_builtins(v)}" for k, v in changed.items())


def _refused(settings: Settings, workers: int, *, logged: bool = False) -> bool:
    """Say why ``settings`` cannot run with ``workers`` (``proxy.replicas``), if so, and
    what differs per process: on stderr for ``check-config``, as JSON log lines for
    ``serve`` (``logged``)."""
    from proxy.replicas import plan_for, replica_problems, replica_warnings

    plan = plan_for(settings, workers)
    problems = replica_problems(settings, plan)
    warnings = [] if problems else replica_warnings(settings, plan)
    if logged:
        log = logging.getLogger("switchyard.cli")
        for problem in problems:
            log.error("cannot run this configuration: %s", problem)
        for warning in warnings:
            log.warning("%s", warning)
    else:
        for problem in problems:
            print(f"switchyard: cannot run this configuration: {problem}", file=sys.stderr)
        for warning in warnings:
            print(f"switchyard: warning: {warning}", file=sys.stderr)
    return bool(problems)


def _serve(args: argparse.Namespace) -> int:
    from proxy.logs import configure_logging

    settings = load_settings(args.config)
    configure_logging(args.log_level.upper())
    if _refused(settings, args.workers, logged=True):
        return 1
    if args.workers > 1:
        from proxy.workers import WorkerSpec, serve_workers

        spec = WorkerSpec(args.config, args.host, args.port, args.log_level)
        host, port = args.host or settings.server.host, args.port or settings.server.port
        return serve_workers(spec, args.workers, host, port)
    from proxy.server import build_server

    server = build_server(settings, host=args.host, port=args.port, log_level=args.log_level)
    server.run()
    return 0


def _check(args: argparse.Namespace) -> int:
    settings = load_settings(args.file)
    print(_routing_table(settings))
    if _refused(settings, args.workers):
        return 1
    return 0


def _workers(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {value!r}")
    return int(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="switchyard", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the server")
    serve.add_argument("--config", help="YAML config file (default: $SWITCHYARD_CONFIG)")
    serve.add_argument("--host", help="interface to bind (default from config: 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default from config: 8080)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument(
        "--workers",
        type=_workers,
        default=1,
        help="processes sharing the port, for remote-only configurations (default 1)",
    )
    serve.set_defaults(run=_serve)
    check = commands.add_parser(
        "check-config", help="validate a config file and print the routing table"
    )
    check.add_argument("file")
    check.add_argument(
        "--workers",
        type=_workers,
        default=1,
        help="check the configuration for this many worker processes (as serve would)",
    )
    check.set_defaults(run=_check)
    add_commands(commands)
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except ConfigError as exc:
        print(f"switchyard: invalid configuration: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
