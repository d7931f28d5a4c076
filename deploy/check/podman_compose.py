"""Runs a compose project with podman (or docker) directly, for make deploy-check.

Why not podman-compose: on these machines podman runs without systemd, so a
container's healthcheck never runs by itself (podman schedules it with systemd
timers), and a compose tool waiting for `service_healthy` waits forever. Here
each healthcheck's command is run by this module with `exec`, until it passes,
and `service_completed_successfully` is `wait` and the exit code.

It reads the files as `docker compose -f A -f B` would and supports exactly the
part of the Compose Specification that deploy/ uses (and refuses keys it does
not know, rather than ignore them): interpolation (`${VAR}`, `${VAR:-default}`,
`${VAR-default}`, `${VAR:?error}`, `$$`), merging of later files into earlier
ones, profiles, depends_on conditions, the default network's subnet, and per service image, command,
entrypoint, environment, volumes (named and bind), ports, read_only, tmpfs,
cap_drop, security_opt, user, hostname, stop_grace_period and healthcheck.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

# Keys this runner understands; `build` and `restart` are read elsewhere or ignored
# on purpose (images are built by `make images`; a crash must show, not restart).
SERVICE_KEYS = {
    "image",
    "build",
    "command",
    "entrypoint",
    "environment",
    "volumes",
    "ports",
    "read_only",
    "tmpfs",
    "cap_drop",
    "security_opt",
    "user",
    "hostname",
    "network_mode",
    "secrets",
    "stop_grace_period",
    "healthcheck",
    "depends_on",
    "restart",
    "profiles",
}
_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)


class ComposeError(RuntimeError):
    """The compose files ask for something this runner does not do, or a variable is missing."""


def interpolate(value: object, env: Mapping[str, str]) -> object:
    """Substitutes variables in every string of a loaded compose document."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["plain"]
        op, arg = match["op"], match["arg"] or ""
        current = env.get(name)
        unset_or_empty = current is None or (current == "" and op and op.startswith(":"))
        if op in (":-", "-") and unset_or_empty:
            return arg
        if op in (":?", "?") and unset_or_empty:
            raise ComposeError(f"{name}: {arg or 'must be set'}")
        return current or ""

    return _VARIABLE.sub(substitute, value)


def merge(base: dict, override: dict) -> dict:
    """A later compose file over an earlier one: mappings merge, everything else is replaced."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load(
    documents: list[dict | Path], env: Mapping[str, str], profiles: frozenset[str] = frozenset()
) -> dict:
    """The project: the files merged in order, interpolated, inactive profiles left out."""
    document: dict = {}
    for item in documents:
        loaded = yaml.safe_load(item.read_text()) if isinstance(item, Path) else item
        document = merge(document, loaded or {})
    document = interpolate(document, env)
    services = {}
    for name, service in document.get("services", {}).items():
        unknown = set(service) - SERVICE_KEYS
        if unknown:
            raise ComposeError(f"service {name}: unsupported keys {sorted(unknown)}")
        if service.get("profiles") and not set(service["profiles"]) & set(profiles):
            continue
        services[name] = service
    document["services"] = services
    return document


def dependencies(service: dict) -> dict[str, str]:
    """depends_on as {service: condition}."""
    depends = service.get("depends_on") or {}
    if isinstance(depends, list):
        return dict.fromkeys(depends, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in depends.items()}


def start_order(services: dict[str, dict]) -> list[str]:
    """Services in an order where each comes after everything it depends on."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            raise ComposeError(f"depends_on cycle through {name}")
        if name not in services:
            raise ComposeError(f"depends_on names {name}, which is not an active service")
        visiting.add(name)
        for dependency in dependencies(services[name]):
            visit(dependency)
        visiting.discard(name)
        order.append(name)

    for name in services:
        visit(name)
    return order


def seconds(duration: str | int | None, default: float) -> float:
    """A compose duration (`40s`, `1m30s`, `500ms`) in seconds."""
    if duration is None:
        return default
    if isinstance(duration, int | float):
        return float(duration)
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ComposeError(f"not a duration: {duration!r}")
    return sum(float(n) * units[u] for n, u in parts)


@dataclass
class Project:
    """One running compose project: containers `<name>-<service>` on network `<name>`."""

    name: str
    document: dict
    directory: Path  # relative bind sources resolve against it (the first file's folder)
    engine: str = "podman"
    log: Callable[[str], None] = print
    started: list[str] = field(default_factory=list)

    def container(self, service: str) -> str:
        return f"{self.name}-{service}"

    @property
    def services(self) -> dict[str, dict]:
        return self.document["services"]

    @property
    def subnet(self) -> str | None:
        """The default network's subnet, when the files fix one (networks.default.ipam)."""
        networks = self.document.get("networks") or {}
        unknown = set(networks) - {"default"}
        if unknown:
            raise ComposeError(f"only the default network is supported, not {sorted(unknown)}")
        configs = ((networks.get("default") or {}).get("ipam") or {}).get("config") or []
        return configs[0]["subnet"] if configs else None

    # ------------------------------------------------------------ engine calls

    def run(
        self, *args: str, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [self.engine, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise ComposeError(f"{self.engine} {' '.join(args[:3])} ...: {result.stderr.strip()}")
        return result

    def exec(self, service: str, *command: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return self.run("exec", self.container(service), *command, check=False, timeout=timeout)

    # ------------------------------------------------------------ lifecycle

    def up(self, only: list[str] | None = None) -> None:
        """Creates the network and volumes, then starts services in dependency order."""
        self.run(
            "network",
            "create",
            "--label",
            f"earlyhelp.project={self.name}",
            *(["--subnet", self.subnet] if self.subnet else []),
            self.name,
        )
        for volume in self.document.get("volumes") or {}:
            self.run(
                "volume",
                "create",
                "--label",
                f"earlyhelp.project={self.name}",
                f"{self.name}_{volume}",
            )
        ready: set[str] = set()
        wanted = start_order(self.services) if only is None else only
        for service in wanted:
            for dependency, condition in dependencies(self.services[service]).items():
                if (dependency, condition) not in ready:
                    self.wait_for(dependency, condition)
                    ready.add((dependency, condition))
            self.start(service)

    def start(self, service: str) -> None:
        self.run(*self.run_arguments(service))
        self.started.append(service)

    def run_arguments(self, service: str) -> list[str]:
        """The engine's `run` arguments for the service, as compose would start it."""
        spec = self.services[service]
        args = [
            "run",
            "--detach",
            "--name",
            self.container(service),
            "--label",
            f"earlyhelp.project={self.name}",
        ]
        shared = spec.get("network_mode", "")
        if shared.startswith("service:"):
            # Another service's network namespace (compose's `service:NAME`): its
            # localhost, its addresses; no network or hostname of its own.
            args += ["--network", f"container:{self.container(shared.removeprefix('service:'))}"]
        elif shared:
            raise ComposeError(f"service {service}: unsupported network_mode {shared}")
        else:
            args += [
                "--network",
                self.name,
                "--network-alias",
                service,
                "--hostname",
                spec.get("hostname", service),
            ]
        if self.engine == "podman":
            # --ulimit: see deploy/podman/containers.conf. The image's own HEALTHCHECK would
            # need systemd timers; compose's healthcheck is run by wait_healthy instead.
            args += ["--ulimit", "host", "--no-healthcheck"]
        environment = spec.get("environment") or {}
        if isinstance(environment, list):
            environment = dict(item.split("=", 1) for item in environment)
        for key, value in environment.items():
            args += ["--env", f"{key}={'' if value is None else value}"]
        for volume in spec.get("volumes") or []:
            args += ["--volume", self._volume(volume)]
        for secret in spec.get("secrets") or []:
            args += ["--volume", self._secret(secret)]
        for port in spec.get("ports") or []:
            args += ["--publish", str(port)]
        if spec.get("read_only"):
            args.append("--read-only")
        for path in spec.get("tmpfs") or []:
            args += ["--tmpfs", path]
        for capability in spec.get("cap_drop") or []:
            args += ["--cap-drop", capability]
        for option in spec.get("security_opt") or []:
            # Compose's `no-new-privileges:true` is podman's and docker's `no-new-privileges`.
            args += ["--security-opt", option.removesuffix(":true")]
        if spec.get("user"):
            args += ["--user", str(spec["user"])]
        args += ["--stop-timeout", str(round(seconds(spec.get("stop_grace_period"), 10)))]
        command = spec.get("command")
        entrypoint = spec.get("entrypoint")
        if entrypoint is not None:
            entrypoint = [entrypoint] if isinstance(entrypoint, str) else entrypoint
            args += ["--entrypoint", entrypoint[0]]
            command = [*entrypoint[1:], *(command or [])]
        args.append(spec["image"])
        if command:
            args += ["sh", "-c", command] if isinstance(command, str) else list(command)
        return args

    def _volume(self, volume: str | dict) -> str:
        if isinstance(volume, str):
            source, _, rest = volume.partition(":")
            target, _, mode = rest.partition(":")
            volume = {"source": source, "target": target, "read_only": mode == "ro"}
        source = volume["source"]
        if source in (self.document.get("volumes") or {}):
            source = f"{self.name}_{source}"
        else:
            source = str((self.directory / source).resolve())
        return f"{source}:{volume['target']}" + (":ro" if volume.get("read_only") else "")

    def _secret(self, secret: str | dict) -> str:
        """A file secret, mounted read-only at /run/secrets/<target> as compose does."""
        if isinstance(secret, str):
            secret = {"source": secret}
        declared = (self.document.get("secrets") or {}).get(secret["source"])
        if not declared or "file" not in declared:
            raise ComposeError(f"secret {secret['source']} is not declared with a file")
        source = (self.directory / declared["file"]).resolve()
        return f"{source}:/run/secrets/{secret.get('target', secret['source'])}:ro"

    def wait_for(self, service: str, condition: str, timeout: float = 180) -> None:
        if condition == "service_started":
            return
        if condition == "service_completed_successfully":
            code = self.run("wait", self.container(service), timeout=timeout).stdout.strip()
            if code != "0":
                raise ComposeError(f"{service} exited {code}:\n{self.logs(service)}")
            return
        if condition != "service_healthy":
            raise ComposeError(f"unsupported depends_on condition {condition}")
        self.wait_healthy(service, timeout)

    def healthy(self, service: str) -> bool:
        healthcheck = self.services[service].get("healthcheck")
        if not healthcheck:
            raise ComposeError(f"{service} has no healthcheck to wait for")
        kind, *test = healthcheck["test"]
        command = ["sh", "-c", test[0]] if kind == "CMD-SHELL" else test
        timeout = seconds(healthcheck.get("timeout"), 30)
        try:
            return self.exec(service, *command, timeout=timeout).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def wait_healthy(self, service: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        interval = min(seconds(self.services[service]["healthcheck"].get("interval"), 5), 2)
        while not self.healthy(service):
            state = self.run("inspect", "--format", "{{.State.Status}}", self.container(service))
            if state.stdout.strip() != "running":
                raise ComposeError(f"{service} is {state.stdout.strip()}:\n{self.logs(service)}")
            if time.monotonic() > deadline:
                raise ComposeError(
                    f"{service} not healthy after {timeout:.0f} s:\n{self.logs(service)}"
                )
            time.sleep(interval)

    def logs(self, service: str, lines: int = 40) -> str:
        out = self.run("logs", "--tail", str(lines), self.container(service), check=False)
        return (out.stdout + out.stderr).strip()

    def down(self) -> None:
        """Removes the project's containers, volumes and network, whatever state they are in."""
        label = f"label=earlyhelp.project={self.name}"
        containers = self.run(
            "ps", "--all", "--quiet", "--filter", label, check=False
        ).stdout.split()
        if containers:
            self.run("rm", "--force", "--time", "0", *containers, check=False)
        volumes = self.run("volume", "ls", "--quiet", "--filter", label, check=False).stdout.split()
        if volumes:
            self.run("volume", "rm", "--force", *volumes, check=False)
        self.run("network", "rm", "--force", self.name, check=False)


def environment_with(overrides: Mapping[str, str]) -> dict[str, str]:
    """The process environment with the project's values on top (as compose reads .env)."""
    return {**os.environ, **overrides}
