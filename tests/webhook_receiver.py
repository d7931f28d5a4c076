"""A partner's webhook receiver as a process of its own, for tests and the bench.

    python -m tests.webhook_receiver --state-dir DIR [--port P ...]

It serves `POST /hooks/<name>` on each port (`--port 0`, the default, takes a
free one). Each named endpoint has its own settings: the subscription's
`secret`, `fail_first` (answer the next N requests with `fail_status`),
`fail_each` (answer the first N attempts of each webhook-id with `fail_status`)
and `fail_status` (503 unless set). Every request is

1. verified the way the Standard Webhooks specification tells a receiver to
   (HMAC-SHA256 of `{webhook-id}.{webhook-timestamp}.{body}` keyed with the
   base64-decoded secret, any of the space-separated `v1,` signatures, the
   timestamp within 5 minutes); written out here from the specification,
   nothing is imported from the hub;
2. answered 401 when it does not verify, else `fail_status` while it is told to
   fail, else 204;
3. recorded, before it is answered, as one JSON line in `DIR/received.jsonl`:
   `seq`, `endpoint`, `webhook_id`, `status`, `verified`, `accepted` (a 2xx),
   `received_at` (Unix time), the `webhook-*` headers and the W3C trace context
   (`traceparent`, `tracestate`) headers, and the parsed event.

Everything it must remember lives in `DIR`, so a receiver that is killed and
started again with the same `--state-dir` and `--port` carries on where it was:
the record, the endpoints' settings, what is left of `fail_first` and how often
each webhook-id has been tried. Once listening it writes `DIR/ready.json`
(`pid`, `ports`).

Control, on any of its ports: `PUT /control/endpoints/<name>` with a JSON object
merges it into the endpoint's settings; `GET /control/received` returns the
record. `WebhookReceiver` below starts, stops, kills and configures one from a
test or the bench.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
RECORD = "received.jsonl"
ENDPOINTS = "endpoints.json"
READY = "ready.json"
TOLERANCE_S = 300
DEFAULTS = {"secret": None, "fail_first": 0, "fail_each": 0, "fail_status": 503}
TRACE_CONTEXT_HEADERS = ("traceparent", "tracestate")


def verify(secret: str, webhook_id: str, timestamp: str, signatures: str, body: bytes) -> bool:
    """Standard Webhooks verification, from the specification."""
    try:
        if abs(time.time() - int(timestamp)) > TOLERANCE_S:
            return False
        key = base64.b64decode(secret.removeprefix("whsec_"))
    except ValueError:
        return False
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(
        hmac.compare_digest(expected, signature.split(",", 1)[1])
        for signature in signatures.split(" ")
        if signature.startswith("v1,")
    )


# --- the process ------------------------------------------------------------------------


class State:
    """The endpoints' settings, the attempts per webhook-id, and the record file."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.lock = threading.Lock()
        path = folder / ENDPOINTS
        self.endpoints: dict[str, dict[str, Any]] = (
            json.loads(path.read_text()) if path.exists() else {}
        )
        self.attempts: Counter[tuple[str, str]] = Counter()
        self.seq = 0
        record = folder / RECORD
        if record.exists():
            for line in record.read_text().splitlines():
                if line.strip():
                    entry = json.loads(line)
                    self.seq = max(self.seq, entry["seq"])
                    self.attempts[(entry["endpoint"], entry["webhook_id"])] += 1
        self._record = open(record, "a", encoding="utf-8")  # noqa: SIM115 (the process's life)

    def settings(self, name: str) -> dict[str, Any]:
        return DEFAULTS | self.endpoints.get(name, {})

    def configure(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.endpoints[name] = self.endpoints.get(name, {}) | changes
            self._save()
            return self.settings(name)

    def _save(self) -> None:
        path = self.folder / ENDPOINTS
        partial = path.with_suffix(".tmp")
        partial.write_text(json.dumps(self.endpoints))
        os.replace(partial, path)

    def receive(self, name: str, headers: dict[str, str], body: bytes) -> int:
        """Decide the answer and record the request; returns the status to answer."""
        webhook_id = headers.get("webhook-id", "")
        with self.lock:
            settings = self.settings(name)
            verified = bool(settings["secret"]) and verify(
                settings["secret"],
                webhook_id,
                headers.get("webhook-timestamp", ""),
                headers.get("webhook-signature", ""),
                body,
            )
            key = (name, webhook_id)
            if not verified:
                status = 401
            elif settings["fail_first"] > 0:
                status = settings["fail_status"]
                self.endpoints[name] = self.endpoints.get(name, {}) | {
                    "fail_first": settings["fail_first"] - 1
                }
                self._save()
            elif self.attempts[key] < settings["fail_each"]:
                status = settings["fail_status"]
            else:
                status = 204
            self.attempts[key] += 1
            self.seq += 1
            try:
                event = json.loads(body)
            except ValueError:
                event = None
            entry = {
                "seq": self.seq,
                "endpoint": name,
                "webhook_id": webhook_id,
                "status": status,
                "verified": verified,
                "accepted": 200 <= status < 300,
                "received_at": time.time(),
                "headers": {
                    k: v
                    for k, v in headers.items()
                    if k.startswith("webhook-") or k in TRACE_CONTEXT_HEADERS
                },
                "event": event,
            }
            # Written (to the OS) before the answer: a receiver killed after answering
            # never forgets what it acknowledged.
            self._record.write(json.dumps(entry, separators=(",", ":")) + "\n")
            self._record.flush()
            return status

    def record(self) -> list[dict[str, Any]]:
        with self.lock:
            self._record.flush()
            return read_record(self.folder)


def read_record(folder: Path) -> list[dict[str, Any]]:
    path = folder / RECORD
    if not path.exists():
        return []
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            found.append(json.loads(line))
        except ValueError:
            continue  # cut short by a kill mid-write: never answered
    return found


def handler_for(state: State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a partner's server would

        def _answer(self, status: int, body: bytes = b"") -> None:
            self.send_response(status)
            self.send_header("content-length", str(len(body)))
            if body:
                self.send_header("content-type", "application/json")
            self.end_headers()
            if body:
                self.wfile.write(body)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("content-length") or 0))

        def do_POST(self) -> None:
            body = self._body()
            if not self.path.startswith("/hooks/"):
                self._answer(404)
                return
            name = self.path.removeprefix("/hooks/").split("?", 1)[0]
            headers = {k.lower(): v for k, v in self.headers.items()}
            self._answer(state.receive(name, headers, body))

        def do_PUT(self) -> None:
            body = self._body()
            if not self.path.startswith("/control/endpoints/"):
                self._answer(404)
                return
            name = self.path.removeprefix("/control/endpoints/")
            settings = state.configure(name, json.loads(body or b"{}"))
            self._answer(200, json.dumps(settings).encode())

        def do_GET(self) -> None:
            if self.path == "/control/received":
                self._answer(200, json.dumps(state.record()).encode())
            elif self.path == "/control/health":
                self._answer(200, b"{}")
            else:
                self._answer(404)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


def serve(folder: Path, ports: list[int]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    state = State(folder)
    handler = handler_for(state)
    servers = []
    for port in ports:
        server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        server.daemon_threads = True
        servers.append(server)
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    ready = folder / READY
    partial = ready.with_suffix(".tmp")
    partial.write_text(
        json.dumps({"pid": os.getpid(), "ports": [s.server_address[1] for s in servers]})
    )
    os.replace(partial, ready)

    def stop(*_: object) -> None:
        # shutdown() waits for serve_forever, so not from the thread that runs it.
        threading.Thread(target=lambda: [s.shutdown() for s in servers]).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    servers[0].serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.webhook_receiver", description=__doc__)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument(
        "--port", type=int, action="append", help="a port to listen on (repeatable; 0: any free)"
    )
    args = parser.parse_args(argv)
    serve(args.state_dir, args.port or [0])


# --- driving one from a test or the bench ----------------------------------------------------


class WebhookReceiver:
    """One receiver process: `start()`, `kill()` (a crash), `stop()`, `start()` again on the
    same ports and state; `configure(name, ...)` whether it is up or down; `records()`."""

    def __init__(self, state_dir: Path, listeners: int = 1) -> None:
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.ports: list[int] = [0] * listeners
        self._process: subprocess.Popen[bytes] | None = None

    # -- lifecycle

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.running else None

    def start(self, timeout_s: float = 15.0) -> WebhookReceiver:
        if self.running:
            raise RuntimeError("the receiver is already running")
        ready = self.state_dir / READY
        ready.unlink(missing_ok=True)
        command = [sys.executable, "-m", "tests.webhook_receiver", "--state-dir"]
        command += [str(self.state_dir), *(f"--port={port}" for port in self.ports)]
        with open(self.state_dir / "receiver.log", "ab") as log:
            self._process = subprocess.Popen(
                command, cwd=REPO_ROOT, stdout=log, stderr=log, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + timeout_s
        while not ready.exists():
            if self._process.poll() is not None or time.monotonic() > deadline:
                log_text = (self.state_dir / "receiver.log").read_text(errors="replace")
                self.kill()
                raise RuntimeError(f"the webhook receiver did not start:\n{log_text[-3000:]}")
            time.sleep(0.01)
        self.ports = json.loads(ready.read_text())["ports"]
        return self

    def kill(self) -> None:
        """Stop it abruptly (SIGKILL), as a crash would; connections are cut."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        self._end(signal.SIGTERM)

    def _end(self, signum: int) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signum)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- use

    def url(self, name: str = "hook", listener: int = 0) -> str:
        return f"http://127.0.0.1:{self.ports[listener]}/hooks/{name}"

    def configure(self, name: str = "hook", **settings: Any) -> None:
        """Change an endpoint's settings (secret, fail_first, fail_each, fail_status)."""
        unknown = set(settings) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown settings {sorted(unknown)}")
        if self.running:
            request = urllib.request.Request(
                f"http://127.0.0.1:{self.ports[0]}/control/endpoints/{name}",
                data=json.dumps(settings).encode(),
                method="PUT",
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
            return
        # Down: nobody else writes the file now; the next start reads it.
        path = self.state_dir / ENDPOINTS
        endpoints = json.loads(path.read_text()) if path.exists() else {}
        endpoints[name] = endpoints.get(name, {}) | settings
        path.write_text(json.dumps(endpoints))

    def records(self, name: str | None = None) -> list[dict[str, Any]]:
        """Every request it answered, in the order it answered them (across restarts)."""
        found = read_record(self.state_dir)
        return found if name is None else [r for r in found if r["endpoint"] == name]


if __name__ == "__main__":
    main()
