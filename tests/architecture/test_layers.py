"""Each service's layers keep to their part (issue 13).

The HTTP layer (any module importing FastAPI) holds routes only and reaches the
database through `commands` and `queries`, never SQLAlchemy; every route is
declared where a search for its path finds it; one clock.
"""

import ast
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("intake", "allocation", "caseplan", "notifications")
_CLOCK_CALLS = re.compile(r"\b(datetime\.now|datetime\.utcnow|date\.today|time\.time)\(")


def _modules(service: str) -> list[Path]:
    folder = ROOT / "services" / service
    return [
        path
        for path in folder.rglob("*.py")
        if "tests" not in path.relative_to(folder).parts
        and "migrations" not in path.relative_to(folder).parts
    ]


def _top_level_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("service", SERVICES)
def test_no_module_that_imports_fastapi_imports_sqlalchemy(service):
    both = [
        str(path.relative_to(ROOT))
        for path in _modules(service)
        if {"fastapi", "sqlalchemy"} <= _top_level_imports(path)
    ]
    assert both == [], f"HTTP modules reaching the database directly: {both}"


@pytest.mark.parametrize("service", SERVICES)
def test_every_route_is_found_by_searching_for_its_path(service):
    """In the module that declares it: the service's own, or the hub's (dead letters)."""
    module = __import__(f"{service}.service", fromlist=["definition"])
    routes = [
        route
        for router in module.definition.routers
        for route in router.routes
        if getattr(route, "path", "").startswith("/v1/") and not route.path.startswith("/v1/oauth")
    ]
    assert routes, f"{service} declares no routes"
    hidden = sorted(
        route.path
        for route in routes
        if not any(
            f'"{written}"' in Path(inspect.getsourcefile(route.endpoint)).read_text()
            for written in (route.path, route.path.removeprefix("/v1"))
        )
    )
    assert hidden == [], f"routes a search for their path does not find: {hidden}"
    registered_in_code = [
        str(path.relative_to(ROOT))
        for path in _modules(service)
        if "add_api_route" in path.read_text()
    ]
    assert registered_in_code == []


@pytest.mark.parametrize("service", SERVICES)
def test_one_clock(service):
    calls = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in _modules(service)
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if _CLOCK_CALLS.search(line)
    ]
    assert calls == [], f"read the time through hub.clock or the Now dependency: {calls}"
