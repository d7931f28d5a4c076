"""Machine facts and CPU accounting from /proc, so figures come with their context."""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def machine_facts() -> dict[str, str]:
    """What the figures were measured on."""
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count() or "?"),
        "cpu": _cpu_model(),
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "kernel": platform.release(),
        "memory": _memory_total(),
        "load_average": " ".join(f"{v:.2f}" for v in os.getloadavg()),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_total() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) // 1024} MiB"
    except OSError:
        pass
    return "unknown"


# --- CPU accounting -------------------------------------------------------------------


def _label(cmdline: list[str]) -> str | None:
    """A short name for the processes the bench starts; None for anything else."""
    joined = " ".join(cmdline)
    if "hub.cli" in joined and "serve" in cmdline:
        return cmdline[cmdline.index("serve") + 1]
    if "tests.bench.bare_app" in joined:
        return "bare"
    if "tests.bench.peer_app" in joined:
        return "peer"
    if (cmdline and "tansu" in Path(cmdline[0]).name) or "--listener-url" in cmdline:
        return "broker"
    if cmdline and Path(cmdline[0]).name == "wrk":
        return "wrk"
    return None


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, stack = [], [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # utime and stime are fields 14 and 15 of stat; fields[0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user
    return total - idle, total


@dataclass
class CpuSample:
    wall: float
    per_process: dict[int, tuple[str, float]]
    machine: tuple[int, int]
    reaped_children: float


def sample_cpu() -> CpuSample:
    per_process: dict[int, tuple[str, float]] = {}
    for pid in _descendants(os.getpid()):
        label = _label(_cmdline(pid))
        seconds = _cpu_seconds(pid)
        if label is not None and seconds is not None:
            per_process[pid] = (label, seconds)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return CpuSample(
        wall=time.monotonic(),
        per_process=per_process,
        machine=_machine_jiffies(),
        reaped_children=usage.ru_utime + usage.ru_stime,
    )


@dataclass
class CpuUsage:
    """CPU used during a window, in cores (CPU seconds / wall seconds)."""

    wall_s: float
    cores: dict[str, float] = field(default_factory=dict)
    machine_busy_cores: float = 0.0
    nproc: int = 1

    @property
    def accounted_cores(self) -> float:
        return sum(self.cores.values())

    @property
    def other_cores(self) -> float:
        """Busy CPU not accounted to the bench's processes (the bench driver, other users)."""
        return max(0.0, self.machine_busy_cores - self.accounted_cores)

    def describe(self) -> str:
        parts = [f"{name} {cores:.2f}" for name, cores in sorted(self.cores.items())]
        return (
            f"machine busy {self.machine_busy_cores:.2f} of {self.nproc} cores; "
            + ", ".join(parts)
            + f"; everything else {self.other_cores:.2f}"
        )


def cpu_between(before: CpuSample, after: CpuSample, *, reaped_label: str | None) -> CpuUsage:
    """CPU used between two samples; `reaped_label` names children reaped in between (wrk)."""
    wall = max(after.wall - before.wall, 1e-9)
    usage = CpuUsage(wall_s=wall, nproc=os.cpu_count() or 1)
    for pid, (label, seconds) in after.per_process.items():
        start = before.per_process.get(pid, (label, 0.0))[1]
        usage.cores[label] = usage.cores.get(label, 0.0) + (seconds - start) / wall
    if reaped_label is not None:
        reaped = (after.reaped_children - before.reaped_children) / wall
        usage.cores[reaped_label] = usage.cores.get(reaped_label, 0.0) + reaped
    busy = after.machine[0] - before.machine[0]
    total = max(after.machine[1] - before.machine[1], 1)
    usage.machine_busy_cores = busy / total * usage.nproc
    return usage
