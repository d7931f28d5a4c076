"""`earlyhelp dev` (`make run`) keeps the hub up: a dead service is started again, alone,
and a service served by hand joins the running hub."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx

from hub.broker import free_port
from tests.harness import wait_for


class _Output(threading.Thread):
    """Collects a process's output lines as they come."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        super().__init__(daemon=True)
        self.process, self.lines = process, []

    def run(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def pids(self, service: str) -> list[int]:
        started = re.compile(rf"^{service} started \(pid (\d+)\)$")
        return [int(m.group(1)) for line in self.lines if (m := started.match(line))]

    def text(self) -> str:
        return "\n".join(self.lines[-40:])


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_dead_service_is_restarted_alone_and_a_served_one_joins(tmp_path: Path) -> None:
    offset = free_port() - 8001  # intake on a free port; case plan two above it
    env = {
        **os.environ,
        "EARLYHELP_VAR_DIR": str(tmp_path),
        "EARLYHELP_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "EARLYHELP_LOG_JSON": "false",
    }
    skipped = ["--skip", "allocation", "--skip", "caseplan", "--skip", "notifications"]
    dev = subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "dev", *skipped, "--port-offset", str(offset)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = _Output(dev)
    output.start()
    joined = None
    try:
        wait_for(lambda: "Ctrl-C stops everything." in output.lines, 90, output.text)
        assert "  caseplan       not started: `earlyhelp serve caseplan` joins" in output.lines
        [first] = output.pids("intake")

        os.kill(first, signal.SIGKILL)
        wait_for(lambda: len(output.pids("intake")) == 2, 60, output.text)
        wait_for(lambda: _ready(8001 + offset), 60, output.text)

        assert dev.poll() is None, "the hub stopped with its service"
        assert (
            "intake exited with status -9; restarting it in 1s (restart 1); "
            "the rest of the hub stays up"
        ) in output.lines
        assert output.pids("intake")[1] != first

        joined = subprocess.Popen(
            [sys.executable, "-m", "hub.cli", "serve", "caseplan", "--port", str(8003 + offset)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # Ready means it found its migrated database and the hub's broker.
        wait_for(lambda: _ready(8003 + offset), 60, "the served case plan never became ready")
    finally:
        if joined is not None:
            joined.send_signal(signal.SIGTERM)
            joined.wait(30)
        dev.send_signal(signal.SIGINT)
        dev.wait(60)
        output.join(5)
    assert dev.returncode == 0, output.text()
    assert output.lines[-1] == "stopped"
