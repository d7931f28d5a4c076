"""`earlyhelp`: the operator's command for every service.

earlyhelp dev                              the whole hub on the embedded defaults
earlyhelp serve intake                     one service (uvicorn)
earlyhelp migrate intake [--revision R]    apply Alembic migrations
earlyhelp topics                           create every hub topic and its DLQ
earlyhelp kafka-acls                       the broker ACL script (deploy/kafka/acls.sh)
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

    from hub.privacy import describe_error, error_stack
    from hub.service import check_configuration, describe_failure

    definition = load_definition(args.service)
    try:
        settings = _settings(args.service)
        check_configuration(settings)
        app = importlib.import_module(f"{args.service}.service").create_app()
        app.state.runtime.preflight()
    except Exception as exc:
        # The stack without exception text: a settings error's would quote its inputs.
        logging.getLogger(__name__).debug(
            "start-up failed: %s", describe_error(exc), extra={"stack": error_stack(exc)}
        )
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


def cmd_kafka_acls(_args: argparse.Namespace) -> None:
    from hub.kafka_acls import render_script

    print(render_script(load_definition(service) for service in SERVICES), end="")


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
    from hub.replay import rebuild_projections

    definition = load_definition(args.service)
    names = args.names or [p.name for p in definition.projections]
    counts = rebuild_projections(definition, _settings(args.service), names)
    for name, count in counts.items():
        print(f"{name}: rebuilt from {count} events")


def cmd_republish(args: argparse.Namespace) -> None:
    from hub.replay import republish

    definition = load_definition(args.service)
    queued, left = republish(definition, _settings(args.service), args.from_position)
    print(f"queued {queued} events from position {args.from_position}; {left} still to send")
    if left:
        raise SystemExit(1)


def cmd_token_keys(args: argparse.Namespace) -> None:
    """Print a JWK Set: `new` (with --rotate: new key first, the signing one kept second)
    for EARLYHELP_TOKEN_SIGNING_KEYS, or `public`, the public keys for the other services."""
    import json

    from hub.tokens import SigningKeys, new_signing_key

    current = HubSettings().token_signing_keys.get_secret_value()
    if args.action == "public" or args.rotate:
        if not current.strip():
            raise SystemExit("EARLYHELP_TOKEN_SIGNING_KEYS is not set")
        keys = json.loads(current)["keys"]
        SigningKeys({"keys": keys})  # refuses what is not a valid signing key set
    if args.action == "public":
        print(json.dumps(SigningKeys({"keys": keys}).public_jwks()))
    else:
        print(json.dumps({"keys": [new_signing_key(), *(keys[:1] if args.rotate else [])]}))


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

    acls = sub.add_parser(
        "kafka-acls", help="print the kafka-acls.sh script granting each principal its topics"
    )
    acls.set_defaults(func=cmd_kafka_acls)

    projections = sub.add_parser("projections", help="list a service's projections")
    projections.add_argument("service", choices=SERVICES)
    projections.set_defaults(func=cmd_projections)

    rebuild = sub.add_parser(
        "rebuild", help="drop and rebuild projections by replay (stop the service first)"
    )
    rebuild.add_argument("service", choices=SERVICES)
    rebuild.add_argument("names", nargs="*", help="projections to rebuild (default: all)")
    rebuild.set_defaults(func=cmd_rebuild)

    republish = sub.add_parser("republish", help="publish a service's stored events again")
    republish.add_argument("service", choices=SERVICES)
    republish.add_argument("--from-position", type=int, required=True)
    republish.set_defaults(func=cmd_republish)

    token_keys = sub.add_parser("token-keys", help="make the token issuer's keys (JWK Sets)")
    token_keys.add_argument("action", choices=["new", "public"])
    token_keys.add_argument(
        "--rotate",
        action="store_true",
        help="new: keep the key of EARLYHELP_TOKEN_SIGNING_KEYS that signs now, second",
    )
    token_keys.set_defaults(func=cmd_token_keys)
    return parser


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for chatty in ("kafka", "alembic"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main(sys.argv[1:])
