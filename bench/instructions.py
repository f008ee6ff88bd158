"""Instructions of one-page sync runs in one process, counted by valgrind's callgrind.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench REDIS_URL=redis://127.0.0.1:6379/8 \\
        python bench/instructions.py [--runs 10]

Counts, not seconds: the same figure on a quiet or a busy machine (to the thousandth), so a
change to the sync's Python can be measured while other work runs. The run is the fan-out's
(bench/fanout.py): a tenant with 20 incidents, all changed since its last sync, one page.
Only this process is counted (not PostgreSQL, devcloud or Redis), and only the runs: setup,
imports and a warm-up run are not. Needs valgrind (Debian's package); ~30 s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
UNDER_VALGRIND = "BENCH_INSTRUCTIONS_OUT"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    if os.environ.get(UNDER_VALGRIND):
        count_runs(args.runs)
        return 0
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "callgrind.out"
        env = {**os.environ, UNDER_VALGRIND: str(out)}
        command = [
            *("valgrind", "--tool=callgrind", "--instr-atstart=no"),
            f"--callgrind-out-file={out}",
            *(sys.executable, __file__, "--runs", str(args.runs)),
        ]
        subprocess.run(command, env=env, check=True, stderr=subprocess.DEVNULL)
        totals = [ln for ln in out.read_text().splitlines() if ln.startswith("totals:")]
        instructions = int(totals[0].split()[1])
    print(
        f"{instructions / args.runs / 1e6:.2f} M instructions per one-page run ({args.runs} runs)"
    )
    return 0


def count_runs(runs: int) -> None:
    from bench.fleet import fleet

    pid = str(os.getpid())
    with fleet(
        prefix="bench-instr ", tenants=runs + 1, incidents=20, workers=0, concurrency=1
    ) as bench:
        from partner_portal.incidents import sync
        from partner_portal.tenants.models import Tenant

        for tenant in Tenant.objects.filter(pk__in=bench.tenant_pks):
            sync.sync_tenant(tenant=tenant)
        for entra_id in bench.entra_ids.values():
            bench.devcloud.evolve(entra_id, changed=20, new=0)
        tenants = list(Tenant.objects.filter(pk__in=bench.tenant_pks))
        sync.sync_tenant(tenant=tenants.pop())  # warm: connections, caches
        toggle = ["callgrind_control", "--instr"]
        subprocess.run([*toggle, "on", pid], check=True, capture_output=True)
        for tenant in tenants:
            sync.sync_tenant(tenant=tenant)
        subprocess.run([*toggle, "off", pid], check=True, capture_output=True)


if __name__ == "__main__":
    sys.exit(main())
