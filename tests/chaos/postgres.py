"""A PostgreSQL instance of the chaos run's own, in a temporary directory, so that it can be
restarted without touching the machine's shared server: Debian's `initdb` and `pg_ctl`,
run as the `postgres` user when the run is root (PostgreSQL refuses to run as root)."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from hub.broker import free_port


def _binary(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    if found is None:
        raise RuntimeError(f"{name} not found: install Debian's postgresql package")
    return found


class OwnPostgres:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.data = self.directory / "data"
        self.port = free_port()
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            self._as_user = ["runuser", "-u", "postgres", "--"]

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str, timeout: float = 120) -> None:
        result = subprocess.run(
            [*self._as_user, *command],
            timeout=timeout,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{Path(command[0]).name} failed: {result.stderr.strip()[-2000:]}")

    def start(self) -> OwnPostgres:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._as_user:
            user = pwd.getpwnam("postgres")
            os.chown(self.directory, user.pw_uid, user.pw_gid)
            # The postgres user must reach its directory through the run's (0700) ones.
            for parent in self.directory.parents:
                if parent == Path(tempfile.gettempdir()):
                    break
                parent.chmod(parent.stat().st_mode | 0o011)
        if not self.data.exists():
            self._run(
                _binary("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                "--no-sync",
            )  # fmt: skip
        self._ctl("start")
        return self

    def _ctl(self, action: str, *options: str) -> None:
        settings = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory} "
            "-c max_connections=300 -c fsync=off"
        )
        self._run(
            _binary("pg_ctl"), action, "-D", str(self.data), "-w", "-t", "60",
            "-l", str(self.directory / "postgres.log"), "-o", settings, *options,
        )  # fmt: skip

    def restart(self) -> None:
        """Stop (fast: every session is cut) and start again on the same port and data."""
        self._ctl("restart", "-m", "fast")

    def stop(self) -> None:
        if self.data.exists():
            with contextlib.suppress(RuntimeError):  # already stopped
                self._ctl("stop", "-m", "immediate")
