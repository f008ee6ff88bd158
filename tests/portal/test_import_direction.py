"""Imports flow one way: microsoft (and audit, the demo's process helpers) ← tenants,
accounts ← consent, incidents ← alerts; devcloud and the portal never import each other (the
emulator is a foreign system). Modules above the apps (settings, urls, celery, and the demo
command that starts the whole portal) may import any app.

Read from the source with `ast`, imports inside functions included, so a lazy import that
goes against the direction fails here too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# An app may import its own modules and those of a lower layer, never a higher or a sibling.
LAYERS = {
    "microsoft": 0,
    "audit": 0,
    "demo": 0,
    "tenants": 1,
    "accounts": 1,
    "consent": 2,
    "incidents": 2,
    "alerts": 3,
}
# Entry points inside an app's folder (Django finds commands only there) that compose the
# whole portal, as urls.py does.
ENTRY_POINTS = {("partner_portal", "tenants", "management", "commands", "demo.py")}


def imported_modules(path: Path, source: str) -> list[str]:
    """Every module `source` imports, relative imports resolved against `path`."""
    package = list(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            names.append(module)
            # `from partner_portal import consent` imports the app itself.
            names += [f"{module}.{alias.name}" for alias in node.names]
    return names


def _app(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "partner_portal" and len(parts) > 1 and parts[1] in LAYERS:
        return parts[1]
    return None


def violations(path: Path, source: str) -> list[str]:
    where = path.relative_to(ROOT).parts
    found = []
    for module in imported_modules(path, source):
        top = module.split(".")[0]
        if where[0] == "devcloud" and top == "partner_portal":
            found.append(f"devcloud imports the portal: {module}")
        elif where[0] == "partner_portal" and top == "devcloud":
            found.append(f"the portal imports devcloud: {module}")
        elif where in ENTRY_POINTS:
            continue
        elif where[0] == "partner_portal" and len(where) > 2 and where[1] in LAYERS:
            source_app, target_app = where[1], _app(module)
            against = target_app and LAYERS[target_app] >= LAYERS[source_app]
            if against and target_app != source_app:
                found.append(f"{source_app} imports {target_app}: {module}")
    return sorted(set(found))


def python_files() -> list[Path]:
    return sorted(
        [*ROOT.joinpath("partner_portal").rglob("*.py"), *ROOT.joinpath("devcloud").rglob("*.py")]
    )


def test_imports_flow_one_way():
    problems = {
        str(path.relative_to(ROOT)): found
        for path in python_files()
        if (found := violations(path, path.read_text(encoding="utf-8")))
    }
    assert problems == {}


def test_no_test_imports_a_conftest_and_bench_imports_no_tests():
    """Helpers live in named modules (tests/waiting.py, …); benchmarks stand on their own."""
    found = []
    for path in sorted(ROOT.joinpath("tests").rglob("*.py")):
        for module in imported_modules(path, path.read_text(encoding="utf-8")):
            if module.split(".")[-1] == "conftest":
                found.append(f"{path.relative_to(ROOT)} imports {module}")
    for path in sorted(ROOT.joinpath("bench").rglob("*.py")):
        for module in imported_modules(path, path.read_text(encoding="utf-8")):
            if module.split(".")[0] == "tests":
                found.append(f"{path.relative_to(ROOT)} imports {module}")
    assert found == []


def test_every_package_of_the_portal_has_a_layer():
    """A new app (or library package) must say where it stands, or the rule ignores it."""
    packages = {path.parent.name for path in ROOT.joinpath("partner_portal").glob("*/__init__.py")}
    assert packages == set(LAYERS)


@pytest.mark.parametrize(
    ("path", "source", "against"),
    [
        ("partner_portal/tenants/views.py", "from partner_portal.consent import tasks", True),
        ("partner_portal/tenants/views.py", "from partner_portal import consent", True),
        ("partner_portal/microsoft/client.py", "from partner_portal.tenants.models import T", True),
        ("partner_portal/consent/flow.py", "def f():\n    import partner_portal.incidents", True),
        ("partner_portal/incidents/sync.py", "from ..consent import flow", True),
        ("partner_portal/consent/flow.py", "from partner_portal.tenants.models import T", False),
        ("partner_portal/consent/flow.py", "from . import tasks", False),
        ("partner_portal/tenants/models.py", "from partner_portal.microsoft import errors", False),
        ("partner_portal/urls.py", "from partner_portal.incidents import views", False),
        ("partner_portal/incidents/sync.py", "from partner_portal.alerts import tasks", True),
        ("partner_portal/tenants/views.py", "from partner_portal.accounts import views", True),
        ("partner_portal/tenants/views.py", "from partner_portal.alerts import models", True),
        ("partner_portal/alerts/views.py", "from partner_portal.incidents import models", False),
        (
            "partner_portal/tenants/management/commands/demo.py",
            "from partner_portal.alerts.demo import ensure_demo_rule",
            False,
        ),
        ("devcloud/app.py", "from partner_portal.microsoft import errors", True),
        ("partner_portal/settings.py", "import devcloud.server", True),
    ],
)
def test_the_rule_catches_what_it_should(path, source, against):
    assert bool(violations(ROOT / path, source)) is against
