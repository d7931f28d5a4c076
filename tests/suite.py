"""`make test`: the whole suite, its two halves at the same time.

- The main suite runs under pytest-xdist (`--workers` processes, `--dist loadfile`):
  most of its time is spent waiting on brokers' group joins and service start-ups.
- Meanwhile the schemathesis modules of tests/api run, each in a pytest process of
  its own, `--api-lanes` at a time: they must not run under pytest-xdist, which folds
  each test's generated cases into one item that passes whatever the API answers
  (tests/api/support.py refuses it), but separate processes are fine, as each module
  starts its own hub. Their time is mostly CPU (generating requests), which fills the
  main suite's waits.

The main suite's output streams as it runs; each tests/api module's follows once it
is done. Then come the ten slowest tests of the whole run and one closing line of
counts; the exit status is non-zero when any process failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
API_MODULES = sorted((ROOT / "tests" / "api").glob("test_*.py"))
SLOWEST_SHOWN = 10


def _pytest(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "pytest", *map(str, args)]


def _run_api_module(module: Path, reports: Path) -> tuple[int, str]:
    report = reports / f"{module.stem}.xml"
    finished = subprocess.run(
        _pytest(module, f"--junitxml={report}"),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    return finished.returncode, finished.stdout


def _test_cases(reports: Path) -> list[ElementTree.Element]:
    cases = []
    for report in sorted(reports.glob("*.xml")):
        cases.extend(ElementTree.parse(report).getroot().iter("testcase"))
    return cases


def _summary(cases: list[ElementTree.Element]) -> tuple[list[str], str]:
    slowest = sorted(cases, key=lambda case: float(case.get("time", 0)), reverse=True)
    lines = [
        f"{float(case.get('time', 0)):8.2f}s {case.get('classname')}::{case.get('name')}"
        for case in slowest[:SLOWEST_SHOWN]
    ]
    failed = sum(1 for case in cases if case.find("failure") is not None)
    failed += sum(1 for case in cases if case.find("error") is not None)
    skipped = sum(1 for case in cases if case.find("skipped") is not None)
    passed = len(cases) - failed - skipped
    return lines, f"suite: {passed} passed, {failed} failed, {skipped} skipped"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="4", help="pytest-xdist processes, main suite")
    parser.add_argument("--api-lanes", type=int, default=2, help="tests/api modules at once")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="earlyhelp-suite-") as folder:
        reports = Path(folder)
        with ThreadPoolExecutor(max_workers=max(1, options.api_lanes)) as lanes:
            api_runs = [lanes.submit(_run_api_module, m, reports) for m in API_MODULES]
            main_status = subprocess.call(
                _pytest(
                    "-n",
                    options.workers,
                    "--dist",
                    "loadfile",
                    "--ignore=tests/api",
                    f"--junitxml={reports / 'main.xml'}",
                ),
                cwd=ROOT,
            )
            statuses = [main_status]
            for module, run in zip(API_MODULES, api_runs, strict=True):
                status, output = run.result()
                statuses.append(status)
                print(f"\n===== {module.relative_to(ROOT)} (its own process) =====", flush=True)
                sys.stdout.write(output)
        slowest, counts = _summary(_test_cases(reports))

    heading = f"the {SLOWEST_SHOWN} slowest tests of the whole run (setup + call + teardown)"
    print(f"\n===== {heading} =====")
    print("\n".join(slowest))
    print(counts, flush=True)
    return 0 if all(status == 0 for status in statuses) else 1


if __name__ == "__main__":
    sys.exit(main())
