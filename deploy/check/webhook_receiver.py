"""The partner's end of make deploy-check: a webhook receiver in a container.

Standard library only (it runs on the bare base image). Every POST is kept in
memory with its headers and body and answered 204; GET /received returns them
all as JSON, for the check to verify each signature with the subscription's
secret. Not for production: it keeps what it receives and trusts anyone.
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Lock

received: list[dict] = []
lock = Lock()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        with lock:
            received.append(
                {
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body.decode(),
                }
            )
        self.send_response(204)
        self.end_headers()

    def do_GET(self) -> None:
        with lock:
            payload = json.dumps(received).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args) -> None:
        pass  # bodies are children's data: nothing goes to the log


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
