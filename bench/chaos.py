"""The chaos suite's scenario table: `python bench/chaos.py [pytest args]`.

Runs tests/chaos (real workers, a private Redis it kills, devcloud with faults) and prints
one row per scenario: incidents lost, duplicated and stale against devcloud's ground truth
after recovery, list calls beyond the minimum one sync needs, 429s caused, seconds from the
end of the fault to every tenant equal to devcloud (how long a tenant stayed blocked), the
same in schedule intervals (the suite runs a 10 s schedule; ×5 min at the default one), and
worker processes still alive. Redis is killed for 5, 15 and 30 s (CHAOS_REDIS_OUTAGES).

Needs the test services (DATABASE_URL, REDIS_URL as for pytest) and redis-server on PATH.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAD = ["scenario", "lost", "duplicated", "stale", "extra calls", "429s", "blocked s"]
HEAD += ["blocked intervals", "workers alive"]
KEYS = ["scenario", "lost", "duplicated", "stale", "extra_calls", "throttled_429"]
KEYS += ["recover_seconds", "recover_intervals", "workers_alive"]
SCHEDULE_SECONDS = 10.0  # tests/chaos/harness.py


def print_table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    for row in rows:
        shown = {**row, "recover_intervals": row["recover_seconds"] / SCHEDULE_SECONDS}
        cells = [f"{shown[k]:.1f}" if isinstance(shown[k], float) else str(shown[k]) for k in KEYS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "chaos.jsonl"
        env = {"CHAOS_REDIS_OUTAGES": "5,15,30", **os.environ, "CHAOS_TABLE_FILE": str(table)}
        cmd = [sys.executable, "-m", "pytest", "tests/chaos", "-q", "-p", "no:cacheprovider"]
        done = subprocess.run(cmd + argv, cwd=ROOT, env=env, check=False)
        lines = table.read_text().splitlines() if table.exists() else []
        rows = [json.loads(line) for line in lines]
    print()
    print(print_table(rows))
    return done.returncode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
