"""Where the time goes: py-spy samples a service while the bench loads it.

Only samples of the thread holding the GIL are kept (`--gil`): on a busy 2-core
machine a thread waiting for the GIL or for a core would otherwise count as
working. Each function's share is of those samples, counted once per sample
however often it recurs in the stack (inclusive), and grouped by function and
file, not line.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

# The hub's own code, and the libraries whose cost a design choice decides.
_OURS = ("hub/", "intake/", "notifications/", "allocation/", "caseplan/")
_LIBRARIES = ("sqlalchemy/engine/default.py", "pydantic/", "jwt/", "opentelemetry/", "httpx/")
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


@dataclass
class Profile:
    service: str
    samples: int
    threads: list[tuple[str, float]] = field(default_factory=list)
    functions: list[tuple[str, float]] = field(default_factory=list)
    # Each sample counted once, for the innermost listed function on its stack: what the
    # time is spent doing, rather than what it is spent under.
    innermost: list[tuple[str, float]] = field(default_factory=list)


def py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def start(pid: int, seconds: float, output: Path) -> subprocess.Popen | None:
    """py-spy recording `pid` for `seconds` into `output`; None when py-spy is missing."""
    binary = py_spy()
    if binary is None:
        return None
    command = [binary, "record", "--pid", str(pid), "--duration", str(int(seconds))]
    command += ["--rate", "100", "--gil", "--threads", "--nonblocking"]
    command += ["--format", "raw", "--output", str(output)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def finish(
    process: subprocess.Popen | None, output: Path, service: str, top: int = 14
) -> Profile | None:
    if process is None:
        return None
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if not output.exists():
        return None
    return summarise(output.read_text(), service, top)


def summarise(collapsed: str, service: str, top: int = 14) -> Profile:
    """Threads' and functions' shares of the samples in py-spy's collapsed stacks."""
    total = 0
    threads: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    innermost: Counter[str] = Counter()
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        threads[_thread_name(frames[0])] += count
        seen = set()
        deepest = None
        for frame in frames[1:]:
            matched = _FRAME.match(frame)
            if matched is None or not matched["file"].startswith(_OURS + _LIBRARIES):
                continue
            name = f"{matched['function']} ({matched['file']})"
            deepest = name
            if name not in seen:
                seen.add(name)
                functions[name] += count
        innermost[deepest or "(outside the listed code)"] += count
    if not total:
        return Profile(service, 0)
    return Profile(
        service,
        total,
        [(name, n / total) for name, n in threads.most_common(6)],
        [(name, n / total) for name, n in functions.most_common(top)],
        [(name, n / total) for name, n in innermost.most_common(top)],
    )


def _thread_name(frame: str) -> str:
    # "thread (0x7f…): intake-writer" or "process 123:…": keep the name, drop ids and digits
    # that only tell threads of one pool apart.
    name = frame.rsplit(":", 1)[-1].strip() or frame
    return re.sub(r"[_-]\d+$", "", name)
