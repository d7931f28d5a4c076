"""`earlyhelp`: the operator's command for every service.

earlyhelp dev                              the whole hub on the embedded defaults
earlyhelp serve intake                     one service (uvicorn)
earlyhelp migrate intake [--revision R]    apply Alembic migrations
earlyhelp topics                           create every hub topic and its DLQ
earlyhelp kafka-acls                       the broker ACL script (deploy/kafka/acls.sh)
earlyhelp projections intake               list projections and their checkpoints
earlyhelp rebuild intake [NAME ...]        drop and rebuild projections by replay
earlyhelp republish intake --from-position N   publish stored events again
earlyhelp dlq list caseplan                what caseplan dead-lettered, and why
earlyhelp dlq show caseplan ID [--data]    one dead-lettered record
earlyhelp dlq redrive caseplan ID... | --all   send records back through the consumer
earlyhelp retention [SERVICE ...]          dispose of what the retention schedule says is due
earlyhelp export annex-a --as-at D --token-file F   Ofsted Annex A list 2 as CSV or XLSX
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


def _dead_letters(service: str):
    from hub.db import Database
    from hub.dlq import DeadLetters

    definition = load_definition(service)
    settings = _settings(service)
    db = Database(settings.database_url)
    return DeadLetters(settings, db, definition.projections, definition.consumes), db


def cmd_dlq_list(args: argparse.Namespace) -> None:
    dead_letters, db = _dead_letters(args.service)
    try:
        letters = dead_letters.read()
        statuses = dead_letters.statuses(letters)
    finally:
        db.dispose()
    if not letters:
        print(f"{args.service} has dead-lettered nothing")
        return
    for letter in letters:
        print(
            f"{letter.id}  {statuses[letter.id]:<11}  {letter.event_type or '?'}  "
            f"event {letter.event_id or '?'}  attempts {letter.attempts}  "
            f"at {letter.failed_at or '?'}\n    {letter.reason}"
        )
    waiting = sum(1 for status in statuses.values() if status == "not applied")
    print(f"{len(letters)} dead-lettered, {waiting} not applied since")


def cmd_dlq_show(args: argparse.Namespace) -> None:
    dead_letters, db = _dead_letters(args.service)
    try:
        letters = {letter.id: letter for letter in dead_letters.read()}
        letter = letters.get(args.id)
        if letter is None:
            raise SystemExit(f"{args.service} has no dead-lettered record {args.id}")
        status = dead_letters.statuses([letter])[letter.id]
    finally:
        db.dispose()
    print(f"id: {letter.id}\nstatus: {status}")
    for name, value in letter.record.headers or []:
        print(f"{name}: {value.decode('utf-8', 'replace')}")
    if args.data:
        # The event's data is a child's or family's record: shown only when asked.
        print(f"data: {(letter.record.value or b'').decode('utf-8', 'replace')}")


def cmd_dlq_redrive(args: argparse.Namespace) -> None:
    from hub.consumer import InfrastructureUnavailable
    from hub.dlq import UnknownDeadLetter

    if bool(args.ids) == args.all:
        raise SystemExit("name the records to redrive, or give --all")
    dead_letters, db = _dead_letters(args.service)
    try:
        results = dead_letters.redrive(None if args.all else args.ids)
    except UnknownDeadLetter as exc:
        raise SystemExit(f"{args.service} has no dead-lettered record {exc}") from None
    except InfrastructureUnavailable as exc:
        raise SystemExit(f"the database or broker is unavailable ({exc}); try again") from None
    finally:
        db.dispose()
    for result in results:
        print(f"{result.id}  {result.outcome}")
    failed = [r for r in results if r.outcome == "dead-lettered again"]
    print(f"{len(results)} redriven, {len(failed)} dead-lettered again")
    if failed:
        raise SystemExit(1)


def cmd_retention(args: argparse.Namespace) -> None:
    """Dispose of what the retention schedule (config/retention.yaml) says is due today.

    In each service's own database: idempotency records and audit rows past their
    period. Case plan also reports the families whose case records fall due and are not
    held (ids and counts; their disposal arrives with erasure, issue 16 item 3). Logs
    counts only. When every service named succeeded, it pushes
    earlyhelp_retention_last_success_timestamp_seconds (docs/operations.md "Retention
    job"); a service that fails is named on stderr and the command exits 1.
    """
    from hub.clock import utc_now
    from hub.db import Database
    from hub.privacy import describe_error
    from hub.retention import load_schedule, metrics_of, publish_metrics, run_for_service

    log = logging.getLogger("hub.retention")
    services = args.services or list(SERVICES)
    for service in services:
        load_definition(service)  # an unknown name ends the command before any disposal
    runs, failed = [], []
    for service in services:
        definition = load_definition(service)
        settings = _settings(service)
        db = None
        try:
            schedule = load_schedule(settings.retention_schedule_file)
            db = Database(settings.database_url)
            with db.write() as conn:
                run = run_for_service(service, conn, schedule, utc_now(), definition.case_records)
        except Exception as exc:  # one service's failure must not stop the others
            failed.append(service)
            print(
                f"earlyhelp retention {service}: failed, nothing disposed there: "
                f"{describe_error(exc)}",
                file=sys.stderr,
            )
            continue
        finally:
            if db is not None:
                db.dispose()
        runs.append(run)
        counts = " ".join(f"{k}={v}" for k, v in run.disposed.by_kind().items())
        log.info("retention %s: disposed %s", service, counts)
        print(f"{service}: disposed {counts}")
        if definition.case_records is not None:
            log.info(
                "retention %s: case records due=%d held=%d (reported, not disposed: "
                "disposal arrives with erasure)",
                service,
                len(run.due_family_ids),
                len(run.held_family_ids),
            )
            print(
                f"{service}: case records due (not disposed until erasure exists): "
                f"{len(run.due_family_ids)} families"
            )
            for family_id in run.due_family_ids:
                print(f"  due  family {family_id}")
            for family_id in run.held_family_ids:
                print(f"  held family {family_id}")
    if runs:
        settings = _settings(services[0])
        try:
            publish_metrics(
                metrics_of(runs, utc_now()),
                settings.retention_pushgateway,
                settings.retention_textfile,
                services[0] if len(services) == 1 else None,
            )
        except Exception as exc:
            print(
                f"earlyhelp retention: the metrics could not be published: {describe_error(exc)}",
                file=sys.stderr,
            )
            raise SystemExit(1) from None
    if failed:
        raise SystemExit(1)


# Annex A comes from case plan's API, not its database: the read is then scoped to the
# caller's localities and every child listed is written to the audit log, as any read is.
ANNEX_A_PATH = "/v1/returns/annex-a/early-help"
EXPORT_MEDIA_TYPES = {
    "csv": "text/csv",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


class ExportRefused(Exception):
    """Case plan answered the export with a problem (its status and title, no values)."""


def fetch_annex_a(client, as_at: str, months: int, file_format: str) -> bytes:
    """List 2 as case plan gives it to the client's bearer token."""
    response = client.get(
        ANNEX_A_PATH,
        params={"as_at": as_at, "months": months},
        headers={"Accept": EXPORT_MEDIA_TYPES[file_format]},
    )
    if response.status_code != 200:
        try:
            problem = response.json()
            why = problem.get("detail") or problem.get("title") or ""
        except ValueError:
            why = ""
        raise ExportRefused(f"{response.status_code} {why}".strip())
    return response.content


def cmd_export_annex_a(args: argparse.Namespace) -> None:
    from pathlib import Path

    import httpx

    token = Path(args.token_file).read_text().strip()
    output = Path(args.output or f"annex-a-list-2-{args.as_at}.{args.format}")
    try:
        with httpx.Client(
            base_url=args.url, headers={"Authorization": f"Bearer {token}"}, timeout=120
        ) as client:
            content = fetch_annex_a(client, args.as_at, args.months, args.format)
    except (ExportRefused, httpx.HTTPError) as exc:
        print(f"earlyhelp export annex-a: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    output.write_bytes(content)
    print(f"wrote {output}")


def cmd_dev(args: argparse.Namespace) -> None:
    from hub.dev import run_hub

    for name in args.skip:
        if name not in SERVICES:
            raise SystemExit(f"unknown service {name!r}; choose among {', '.join(SERVICES)}")
    raise SystemExit(
        run_hub(
            SERVICES,
            embedded_broker=not args.external_broker,
            skip=args.skip,
            port_offset=args.port_offset,
        )
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="earlyhelp", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", help="run the whole hub on the embedded defaults")
    dev.add_argument(
        "--external-broker",
        action="store_true",
        help="use EARLYHELP_KAFKA_BOOTSTRAP_SERVERS instead of starting the embedded broker",
    )
    dev.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="SERVICE",
        help="migrate but do not start SERVICE, to run it yourself with `earlyhelp serve`",
    )
    dev.add_argument(
        "--port-offset",
        type=int,
        default=0,
        help="serve each service on its port plus this (8001+N, ...)",
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

    token_keys = sub.add_parser("token-keys", help="make the token issuer's keys (JWK Sets)")
    token_keys.add_argument("action", choices=["new", "public"])
    token_keys.add_argument(
        "--rotate",
        action="store_true",
        help="new: keep the key of EARLYHELP_TOKEN_SIGNING_KEYS that signs now, second",
    )
    token_keys.set_defaults(func=cmd_token_keys)

    dlq = sub.add_parser("dlq", help="list, show and redrive a service's dead-lettered records")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True)
    dlq_list = dlq_sub.add_parser("list", help="what the service dead-lettered, and why")
    dlq_list.add_argument("service", choices=SERVICES)
    dlq_list.set_defaults(func=cmd_dlq_list)
    dlq_show = dlq_sub.add_parser("show", help="one dead-lettered record's headers")
    dlq_show.add_argument("service", choices=SERVICES)
    dlq_show.add_argument("id", help="as `dlq list` shows it: <dlq topic>:<partition>:<offset>")
    dlq_show.add_argument(
        "--data", action="store_true", help="print the event's data too (personal data)"
    )
    dlq_show.set_defaults(func=cmd_dlq_show)
    dlq_redrive = dlq_sub.add_parser(
        "redrive", help="send records back through the service's consumer, each event once"
    )
    dlq_redrive.add_argument("service", choices=SERVICES)
    dlq_redrive.add_argument("ids", nargs="*", help="records to redrive, as `dlq list` shows")
    dlq_redrive.add_argument("--all", action="store_true", help="every record of the service")
    dlq_redrive.set_defaults(func=cmd_dlq_redrive)

    retention = sub.add_parser(
        "retention",
        help="dispose of what the retention schedule says is due (the nightly job)",
    )
    retention.add_argument(
        "services",
        nargs="*",
        metavar="SERVICE",
        help=f"any of {', '.join(SERVICES)} (default: all, each in its own database)",
    )
    retention.set_defaults(func=cmd_retention)

    export = sub.add_parser("export", help="the lists inspectors and government ask for")
    export_sub = export.add_subparsers(dest="export_command", required=True)
    annex_a = export_sub.add_parser(
        "annex-a", help="Ofsted Annex A list 2 (early help) as at an inspection date"
    )
    annex_a.add_argument("--as-at", required=True, help="the inspection date, YYYY-MM-DD")
    annex_a.add_argument("--months", type=int, default=6, help="the look-back (default 6)")
    annex_a.add_argument("--format", choices=sorted(EXPORT_MEDIA_TYPES), default="xlsx")
    annex_a.add_argument("--output", help="the file (default annex-a-list-2-DATE.FORMAT)")
    annex_a.add_argument(
        "--url", default="http://127.0.0.1:8003", help="case plan's address (default local)"
    )
    annex_a.add_argument(
        "--token-file",
        required=True,
        help="a staff bearer token with returns:read (information governance or a manager), "
        "e.g. var/demo-ig-token",
    )
    annex_a.set_defaults(func=cmd_export_annex_a)
    return parser


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for chatty in ("kafka", "alembic"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main(sys.argv[1:])
