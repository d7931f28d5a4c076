"""`earlyhelp`: the operator's command for every service.

earlyhelp dev                              the whole hub on the embedded defaults
earlyhelp serve intake                     one service (uvicorn)
earlyhelp migrate intake [--revision R]    apply Alembic migrations
earlyhelp topics                           create every hub topic and its DLQ
earlyhelp projections intake               list projections and their checkpoints
earlyhelp rebuild intake [NAME ...]        drop and rebuild projections by replay
earlyhelp republish intake --from-position N   publish stored events again
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from hub.settings import HubSettings

SERVICES = ("intake", "allocation", "caseplan", "notifications")


def load_definition(service: str):
    """The service's definition, imported by name so the hub never depends on a service."""
    if service not in SERVICES:
        raise SystemExit(f"unknown service {service!r}; choose one of {', '.join(SERVICES)}")
    return importlib.import_module(f"{service}.service").definition


def _settings(service: str) -> HubSettings:
    return HubSettings(service_name=service)


def cmd_serve(args: argparse.Namespace) -> None:
    """Check the configuration and what the service needs, then serve.

    Anything wrong before uvicorn listens (a setting, a file, the database, the
    broker) ends the process with exit code 1 and one line on stderr:
    `earlyhelp serve <service>: cannot start: <reason>`.
    """
    import uvicorn

    from hub.service import check_configuration, describe_failure

    definition = load_definition(args.service)
    try:
        settings = _settings(args.service)
        check_configuration(settings)
        app = importlib.import_module(f"{args.service}.service").create_app()
        app.state.runtime.preflight()
    except Exception as exc:
        logging.getLogger(__name__).debug("start-up failed", exc_info=True)
        print(
            f"earlyhelp serve {args.service}: cannot start: {describe_failure(exc)}",
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(1) from None
    uvicorn.run(
        app,
        host=args.host,
        port=args.port or definition.port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=settings.http_access_log,
        timeout_graceful_shutdown=10,
    )


def cmd_migrate(args: argparse.Namespace) -> None:
    from hub import migrations

    definition = load_definition(args.service)
    url = _settings(args.service).database_url
    if args.down:
        migrations.downgrade(definition.migrations, url, args.down)
    else:
        migrations.upgrade(definition.migrations, url, args.revision)


def cmd_topics(_args: argparse.Namespace) -> None:
    from hub.contracts.topics import hub_topics
    from hub.kafka import ensure_topics, wait_for_broker

    settings = HubSettings()
    wait_for_broker(settings, timeout_s=30)
    topics = hub_topics()
    created = ensure_topics(settings, topics)
    print(f"{len(topics)} topics present ({len(created)} created)")


def cmd_projections(args: argparse.Namespace) -> None:
    from hub.db import Database
    from hub.projections import checkpoints

    definition = load_definition(args.service)
    db = Database(_settings(args.service).database_url)
    with db.read() as conn:
        for projection in definition.projections:
            marks = checkpoints(conn, projection.name)
            where = ", ".join(f"{k}@{v}" for k, v in sorted(marks.items())) or "nothing applied"
            print(f"{projection.name}: {where}")


def cmd_rebuild(args: argparse.Namespace) -> None:
    from hub.liveness import ServiceRunning
    from hub.replay import rebuild_projections

    definition = load_definition(args.service)
    names = args.names or [p.name for p in definition.projections]
    try:
        counts = rebuild_projections(definition, _settings(args.service), names)
    except ServiceRunning as exc:
        print(
            f"earlyhelp rebuild {args.service}: refused, nothing changed: {exc}. A rebuild "
            "empties the read models and replays history into them; stop every process of "
            "the service first (see docs/operations.md).",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    for name, count in counts.items():
        print(f"{name}: rebuilt from {count} events")


def cmd_republish(args: argparse.Namespace) -> None:
    from hub.replay import republish

    definition = load_definition(args.service)
    result = republish(definition, _settings(args.service), args.from_position)
    by = "the service's running relay" if result.by_running_relay else "this command"
    sent = result.queued - result.left
    print(
        f"queued {result.queued} events from position {args.from_position} in the outbox; "
        f"{sent} sent by {by}; {result.left} still queued"
    )
    if result.left:
        print(
            f"{result.left} events are still in the outbox (is the broker reachable?); they "
            "stay there, and the service's relay sends them when it runs",
            file=sys.stderr,
        )
        raise SystemExit(1)


def cmd_dev(args: argparse.Namespace) -> None:
    from hub.dev import run_hub

    raise SystemExit(run_hub(SERVICES, embedded_broker=not args.external_broker))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="earlyhelp", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", help="run the whole hub on the embedded defaults")
    dev.add_argument(
        "--external-broker",
        action="store_true",
        help="use EARLYHELP_KAFKA_BOOTSTRAP_SERVERS instead of starting the embedded broker",
    )
    dev.set_defaults(func=cmd_dev)

    serve = sub.add_parser("serve", help="run one service")
    serve.add_argument("service", choices=SERVICES)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=None)
    serve.set_defaults(func=cmd_serve)

    migrate = sub.add_parser("migrate", help="apply a service's database migrations")
    migrate.add_argument("service", choices=SERVICES)
    migrate.add_argument("--revision", default="head")
    migrate.add_argument("--down", metavar="REVISION", help="downgrade to REVISION instead")
    migrate.set_defaults(func=cmd_migrate)

    topics = sub.add_parser("topics", help="create every service topic and its DLQ")
    topics.set_defaults(func=cmd_topics)

    projections = sub.add_parser("projections", help="list a service's projections")
    projections.add_argument("service", choices=SERVICES)
    projections.set_defaults(func=cmd_projections)

    rebuild = sub.add_parser(
        "rebuild",
        help="drop and rebuild projections by replay (refused while the service runs)",
    )
    rebuild.add_argument("service", choices=SERVICES)
    rebuild.add_argument("names", nargs="*", help="projections to rebuild (default: all)")
    rebuild.set_defaults(func=cmd_rebuild)

    republish = sub.add_parser("republish", help="publish a service's stored events again")
    republish.add_argument("service", choices=SERVICES)
    republish.add_argument("--from-position", type=int, required=True)
    republish.set_defaults(func=cmd_republish)
    return parser


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for chatty in ("kafka", "alembic"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main(sys.argv[1:])
