"""Named starting states. `demo`: four customer tenants (one in GCC High) with fixed IDs and
domains, not consented to anything; the portal's `manage.py demo` registers its own app."""

from __future__ import annotations

import random

from .state import Store

DEMO_TENANTS = [
    # tenant_id, domain, display name, incidents
    ("6f1c2a3e-1b7d-4c55-9a0e-2f4b8c9d0a11", "contoso.onmicrosoft.com", "Contoso", 240),
    ("9b2d4e6f-8a1c-4b3d-8e5f-7a6b5c4d3e22", "fabrikam.onmicrosoft.com", "Fabrikam", 120),
    ("c3e5a7b9-2d4f-4a6c-9b8d-1e3f5a7c9b33", "northwind.onmicrosoft.com", "Northwind Traders", 60),
    ("e7a9c1d3-4f6b-4c8e-a0b2-3d5f7a9c1e44", "tailspin.onmicrosoft.us", "Tailspin Toys", 60),
]
# tenant_id → its cloud, when not commercial: found only at that cloud's login host.
DEMO_CLOUDS = {"e7a9c1d3-4f6b-4c8e-a0b2-3d5f7a9c1e44": "gcc_high"}


def load(store: Store, name: str, *, seed: int = 0) -> None:
    if name != "demo":
        raise ValueError(f"unknown scenario {name!r} (known: demo)")
    for index, (tid, domain, display, count) in enumerate(DEMO_TENANTS):
        if store.resolve_tenant(tid):
            continue
        store.create_tenant(
            tenant_id=tid,
            domain=domain,
            display_name=display,
            seed=seed * 101 + index,
            cloud=DEMO_CLOUDS.get(tid, "commercial"),
        )
        store.generate(tid, count)


def evolve_demo(store: Store, rng: random.Random) -> None:
    """One minute of life in the demo tenants: a few changes, sometimes a new incident."""
    for tid, *_ in DEMO_TENANTS:
        if store.resolve_tenant(tid):
            store.evolve(tid, changed=rng.randint(1, 4), new=rng.choice([0, 0, 1, 1, 2]))
