"""`python -m devcloud --host 127.0.0.1 --port 8443 --state-dir var/devcloud [--scenario demo]`

When it serves, prints `devcloud ready {"base_url": …, "ca_file": …}`: one line of JSON that
programs read (devcloud/launcher.py, `manage.py demo`); the other lines are for people.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import threading
from pathlib import Path

from .app import DevCloudApp
from .pki import ensure_pki
from .scenarios import DEMO_TENANTS, evolve_demo, load
from .server import Server, make_ssl_context
from .state import Store


def say(line: str) -> None:
    print(f"devcloud {line}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devcloud", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8443, help="HTTPS port; 0 picks a free one")
    parser.add_argument("--http-port", type=int, default=None, help="also serve plain HTTP")
    parser.add_argument("--state-dir", default="var/devcloud")
    parser.add_argument("--scenario", choices=["demo"], default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--evolve-every", type=float, default=60.0, help="demo: seconds between evolve steps"
    )
    args = parser.parse_args(argv)

    state_dir = Path(args.state_dir)
    pki = ensure_pki(state_dir, args.host)
    store = Store(seed=args.seed)
    app = DevCloudApp(store=store, pki=pki, host=args.host)
    https = Server(
        (args.host, args.port), app, make_ssl_context(str(pki.cert_file), str(pki.key_file))
    )
    app.https_port = https.server_address[1]
    servers = [https]
    if args.http_port is not None:
        plain = Server((args.host, args.http_port), app, None)
        app.http_port = plain.server_address[1]
        servers.append(plain)
    if args.scenario:
        load(store, args.scenario, seed=args.seed)

    threads = [
        threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
        for s in servers
    ]
    for t in threads:
        t.start()
    if args.scenario == "demo":
        rng = random.Random(args.seed)

        def evolve_loop() -> None:
            while not app.stopping.wait(args.evolve_every):
                evolve_demo(store, rng)

        threading.Thread(target=evolve_loop, daemon=True, name="demo-evolve").start()

    facts = {
        "base_url": app.base_url,
        "ca_file": str(pki.ca_file),
        "state_dir": str(state_dir.resolve()),
    }
    if app.http_port is not None:
        host = "127.0.0.1" if args.host in ("0.0.0.0", "") else args.host  # noqa: S104
        facts["http_base_url"] = f"http://{host}:{app.http_port}"
    if args.scenario:
        say(f"scenario={args.scenario}")
        if args.scenario == "demo":
            for tid, domain, name, _count in DEMO_TENANTS:
                say(f"tenant={tid} domain={domain} display_name={name}")

    def stop(signum, frame) -> None:
        app.stopping.set()

    # Before the ready line: whoever read it may stop us at once, and must get a clean stop.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    say(f"ready {json.dumps(facts)}")  # last: the servers already answer
    while not app.stopping.wait(1.0):
        pass
    for s in servers:
        s.shutdown()
        s.server_close()
    say("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
