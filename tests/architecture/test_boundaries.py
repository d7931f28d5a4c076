"""The layout's rules: services never import each other; the hub imports no service."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("intake", "allocation", "caseplan", "notifications")


def _imported_top_level_packages(folder: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in folder.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_imports_no_other_service(service):
    imports = _imported_top_level_packages(ROOT / "services" / service)
    others = {
        name: files for name, files in imports.items() if name in SERVICES and name != service
    }
    assert others == {}, f"{service} imports another service: {others}"


def test_the_hub_library_imports_no_service():
    imports = _imported_top_level_packages(ROOT / "shared" / "hub")
    assert {name for name in imports if name in SERVICES} == set()
