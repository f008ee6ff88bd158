"""What partner_portal/settings.py reads, found by parsing its source: the tests that compare
it with `.env.example` and docker-compose.yml then cannot drift from it silently.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]
SETTINGS_PY = BASE_DIR / "partner_portal" / "settings.py"
# env.str("X"), env.list("X"), env.db_url("X"), env_bool("X", …), env_int(…), env_base_url(…)…
_READERS = {"str", "list", "db_url", "bool", "int", "env_bool", "env_int", "env_base_url"}
_READERS |= {"env_path", "dict"}
_SECTION = re.compile(r"^# --- (.+?) -+$")


def settings_variables() -> dict[str, str]:
    """Every environment variable settings.py reads → the `# --- Section ---` it is read in."""
    source = SETTINGS_PY.read_text()
    sections: list[tuple[int, str]] = []
    for number, line in enumerate(source.splitlines(), start=1):
        if match := _SECTION.match(line):
            sections.append((number, match.group(1)))
    found: dict[str, str] = {}
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and node.args):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        first = node.args[0]
        if name in _READERS and isinstance(first, ast.Constant) and isinstance(first.value, str):
            # Read before the first header (ENV_FILE) counts as the first section.
            before = [title for line, title in sections if line <= node.lineno]
            found.setdefault(first.value, before[-1] if before else sections[0][1])
    return found


def clean_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """This environment without any portal variable, no .env file, state under tmp_path."""
    env = {k: v for k, v in os.environ.items() if k not in settings_variables()}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env |= {"ENV_FILE": "", "VAR_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    return env | overrides


def manage(
    args: list[str], env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), *args],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
