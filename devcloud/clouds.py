"""Microsoft's clouds as devcloud serves them: each under its own base URL
(`/_clouds/<name>/…`; the bare root is the commercial cloud), with that cloud's token
audiences and issuer, so that a token from one cloud is refused at another's API.

Commercial and GCC tenants live in the global Entra ID (issuer sts.windows.net); GCC High and
DoD tenants in Azure Government's (login.microsoftonline.us). A tenant is found only at the
login host of its own Entra ID. Hosts: docs/microsoft-protocols.md §6.1 and §7.1.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFENDER = "https://api.security.microsoft.com"
GRAPH = "https://graph.microsoft.com"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
DEFENDER_APP_ID = "8ee8fdad-f234-4243-8f3b-15c294843740"


@dataclass(frozen=True)
class Cloud:
    name: str
    entra: str  # "global" or "usgov": the Entra ID its tenants sign in at
    issuer_base: str  # v1 access tokens' `iss` is f"{issuer_base}/{tid}/"
    defender: tuple[str, ...]  # audiences the Defender API accepts (first: its App ID URI)
    graph: tuple[str, ...]  # audiences Graph accepts

    def issuer(self, tid: str) -> str:
        return f"{self.issuer_base}/{tid}/"

    def resources(self) -> dict[str, str]:
        """What a client-credentials scope may name here → the token's `aud`."""
        found = {aud.lower(): self.defender[0] for aud in self.defender}
        found |= {aud.lower(): self.graph[0] for aud in self.graph}
        if self.name == "commercial" or self.name == "gcc":
            found[DEFENDER_APP_ID] = DEFENDER
            found[GRAPH_APP_ID] = GRAPH
            # The older Defender for Endpoint resource keeps its own audience.
            found["https://api.securitycenter.microsoft.com"] = (
                "https://api.securitycenter.microsoft.com"
            )
        return found


_GLOBAL = "https://sts.windows.net"
_USGOV = "https://login.microsoftonline.us"
CLOUDS = {
    "commercial": Cloud(
        "commercial", "global", _GLOBAL,
        (DEFENDER, "https://api.securitycenter.microsoft.com"), (GRAPH, GRAPH_APP_ID),
    ),
    "gcc": Cloud(
        "gcc", "global", _GLOBAL,
        ("https://api-gcc.security.microsoft.us",), (GRAPH, GRAPH_APP_ID),
    ),
    "gcc_high": Cloud(
        "gcc_high", "usgov", _USGOV,
        ("https://api-gov.security.microsoft.us",), ("https://graph.microsoft.us",),
    ),
    "dod": Cloud(
        "dod", "usgov", _USGOV,
        ("https://api-gov.security.microsoft.us",), ("https://dod-graph.microsoft.us",),
    ),
}  # fmt: skip


def of(req) -> Cloud:
    return CLOUDS[getattr(req, "cloud", "commercial") or "commercial"]


def same_entra(tenant_cloud: str, req) -> bool:
    """The tenant signs in at the login host this request came to."""
    return CLOUDS.get(tenant_cloud, CLOUDS["commercial"]).entra == of(req).entra
