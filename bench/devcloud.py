"""How many 100-incident list pages per second devcloud serves over HTTPS with keep-alive.

    python bench/devcloud.py [--seconds 10] [--connections 2] [--base-url URL --ca-file PEM]

Without --base-url it starts its own devcloud (state in a temp dir). Prints req/s and MB/s.
Rate limits are raised for the run, so throttling does not cap the figure.
"""

from __future__ import annotations

import argparse
import http.client
import json
import ssl
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devcloud import launcher  # noqa: E402
from devcloud.client import DevCloud  # noqa: E402


def worker(base_url, ca_file, token, path, deadline, counts, index, use_requests):
    done = size = 0
    if use_requests:
        session = DevCloud(base_url, ca_file).session()
        headers = {"Authorization": f"Bearer {token}"}
        while time.monotonic() < deadline:
            resp = session.get(base_url + path, headers=headers)
            assert resp.status_code == 200, resp.text[:200]
            size += len(resp.content)
            done += 1
    else:
        parts = urlsplit(base_url)
        context = ssl.create_default_context(cafile=ca_file)
        conn = http.client.HTTPSConnection(parts.hostname, parts.port, context=context)
        headers = {"Authorization": f"Bearer {token}"}
        while time.monotonic() < deadline:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            assert resp.status == 200, body[:200]
            size += len(body)
            done += 1
        conn.close()
    counts[index] = (done, size)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=2)
    parser.add_argument("--incidents", type=int, default=300)
    parser.add_argument("--requests", action="store_true", help="client: requests, not http.client")
    parser.add_argument("--base-url")
    parser.add_argument("--ca-file")
    args = parser.parse_args()

    server = None
    if args.base_url:
        dc = DevCloud(args.base_url, args.ca_file)
    else:
        server = launcher.start(Path(tempfile.mkdtemp(prefix="devcloud-bench-")))
        dc = server.client
    try:
        dc.set_limits(per_minute=10**9, per_hour=10**9)
        tenant = dc.create_tenant()
        tid = tenant["tenant_id"]
        dc.generate_incidents(tid, args.incidents, seed=1)
        app = dc.create_app(display_name="bench", secrets=[{"value": "bench-secret-1234"}])
        dc.set_consent(tid, app["client_id"])
        token = (
            dc.session()
            .post(
                f"{dc.base_url}/{tid}/oauth2/v2.0/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": app["client_id"],
                    "client_secret": "bench-secret-1234",
                    "scope": "https://api.security.microsoft.com/.default",
                },
            )
            .json()["access_token"]
        )
        path = "/api/incidents?$top=100"
        check = dc.session().get(dc.base_url + path, headers={"Authorization": f"Bearer {token}"})
        assert len(check.json()["value"]) == 100
        counts: list = [None] * args.connections
        deadline = time.monotonic() + args.seconds
        started = time.monotonic()
        threads = [
            threading.Thread(
                target=worker,
                args=(dc.base_url, dc.ca_file, token, path, deadline, counts, i, args.requests),
            )
            for i in range(args.connections)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
        total = sum(c[0] for c in counts)
        size = sum(c[1] for c in counts)
        log = dc.requests_log(tenant=tid, entries=False)
        print(
            json.dumps(
                {
                    "page_size": 100,
                    "connections": args.connections,
                    "client": "requests" if args.requests else "http.client",
                    "seconds": round(elapsed, 2),
                    "requests": total,
                    "req_per_s": round(total / elapsed, 1),
                    "mb_per_s": round(size / elapsed / 1e6, 1),
                    "avg_page_kb": round(size / max(total, 1) / 1024, 1),
                    "devcloud_logged": log["by_endpoint"].get("list_incidents"),
                }
            )
        )
        dc.reset()
    finally:
        if server:
            server.stop()


if __name__ == "__main__":
    main()
