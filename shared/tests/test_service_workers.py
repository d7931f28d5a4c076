"""A service's own background workers run through its ServiceDefinition (issue 13)."""

from pathlib import Path

from hub.service import Runtime, ServiceDefinition
from hub.testing import settings_for


class Recording:
    def __init__(self, name: str, calls: list[str]) -> None:
        self.name, self.calls = name, calls

    def prepare(self) -> None:
        self.calls.append(f"{self.name}.prepare")

    def start(self) -> None:
        self.calls.append(f"{self.name}.start")

    def stop(self) -> None:
        self.calls.append(f"{self.name}.stop")


def test_workers_are_prepared_started_and_drained_in_order(tmp_path: Path):
    calls: list[str] = []
    made: list[Runtime] = []

    def worker(name):
        def make(runtime: Runtime) -> Recording:
            made.append(runtime)
            return Recording(name, calls)

        return make

    definition = ServiceDefinition(
        name="notifications",  # produces no events: no relay, no consumer
        title="t",
        description="d",
        port=0,
        migrations=tmp_path,
        workers=[worker("first"), worker("second")],
    )
    settings = settings_for(
        "notifications", f"sqlite:///{tmp_path}/db.sqlite", "127.0.0.1:1", tmp_path
    )
    runtime = Runtime(definition, settings)
    runtime.start()
    assert calls == ["first.prepare", "second.prepare", "first.start", "second.start"]
    assert made == [runtime, runtime]
    runtime.stop(drain_timeout_s=1)
    assert calls[4:] == ["second.stop", "first.stop"]
