"""Imports flow one way: microsoft (and audit) ← tenants ← consent, incidents; devcloud and
the portal never import each other (the emulator is a foreign system).

Read from the source with `ast`, imports inside functions included, so a lazy import that
goes against the direction fails here too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# An app may import its own modules and those of a lower layer, never a higher or a sibling.
LAYERS = {"microsoft": 0, "audit": 0, "tenants": 1, "consent": 2, "incidents": 2}


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
        ("devcloud/app.py", "from partner_portal.microsoft import errors", True),
        ("partner_portal/settings.py", "import devcloud.server", True),
    ],
)
def test_the_rule_catches_what_it_should(path, source, against):
    assert bool(violations(ROOT / path, source)) is against
