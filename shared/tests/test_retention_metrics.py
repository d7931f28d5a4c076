"""What `earlyhelp retention` reports, and where: a Pushgateway's HTTP API and a textfile."""

import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer

from hub.retention import Disposed, ServiceRun, metrics_of, publish_metrics

FINISHED = datetime(2026, 12, 3, 2, 30, tzinfo=UTC)
RUNS = [
    ServiceRun("intake", Disposed(idempotency_records=3, audit_rows=7)),
    ServiceRun("caseplan", Disposed(0, 1), ("f1", "f2"), ("f3",), reports_case_records=True),
]


class _Gateway(BaseHTTPRequestHandler):
    received: list[tuple[str, str, bytes]] = []

    def do_PUT(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append(("PUT", self.path, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_args):
        pass


def test_the_metrics_name_services_and_kinds_never_a_family():
    registry = metrics_of(RUNS, FINISHED)
    value = registry.get_sample_value
    assert (
        value("earlyhelp_retention_last_success_timestamp_seconds", {"service": "intake"})
        == FINISHED.timestamp()
    )
    assert (
        value("earlyhelp_retention_disposed_records", {"service": "intake", "kind": "audit_rows"})
        == 7
    )
    assert value("earlyhelp_retention_case_records_due", {"service": "caseplan"}) == 2
    # Intake decides nothing about case records; no family id is ever a label.
    assert value("earlyhelp_retention_case_records_due", {"service": "intake"}) is None
    text = _text(registry)
    assert "f1" not in text and "f3" not in text


def test_pushed_to_the_pushgateway_under_the_job_and_the_service():
    _Gateway.received = []
    server = HTTPServer(("127.0.0.1", 0), _Gateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        registry = metrics_of(RUNS[1:], FINISHED)
        publish_metrics(registry, f"127.0.0.1:{server.server_port}", None, "caseplan")
    finally:
        server.shutdown()
        server.server_close()
    [(method, path, body)] = _Gateway.received
    assert (method, path) == ("PUT", "/metrics/job/earlyhelp-retention/service/caseplan")
    assert b"earlyhelp_retention_last_success_timestamp_seconds" in body


def test_written_to_a_textfile_for_node_exporter(tmp_path):
    target = tmp_path / "earlyhelp-retention.prom"
    publish_metrics(metrics_of(RUNS, FINISHED), "", target, None)
    assert "earlyhelp_retention_last_success_timestamp_seconds" in target.read_text()


def _text(registry) -> str:
    from prometheus_client import generate_latest

    return generate_latest(registry).decode()
