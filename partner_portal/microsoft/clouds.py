"""The hosts of each Microsoft cloud a customer tenant can live in, in one table.

A tenant in GCC High or DoD signs in at `login.microsoftonline.us`, and its tokens are asked
for that cloud's resources: a token for the commercial Defender API is refused there (and
the other way round). Each row names every host the portal calls or links to.

Sources (docs/microsoft-protocols.md §6.1 and §7.1):
- Defender XDR for US Government: https://learn.microsoft.com/en-us/defender-xdr/usgov
  (API hosts api-gcc / api-gov .security.microsoft.us, portals security.microsoft.us and
  security.apps.mil, login host per cloud).
- Microsoft Graph national clouds:
  https://learn.microsoft.com/en-us/graph/deployments (graph.microsoft.com for global and
  GCC, graph.microsoft.us for GCC High, dod-graph.microsoft.us for DoD; login host per cloud).

The Defender token resource outside the commercial cloud is the cloud's API host (as for
Defender for Endpoint's `api-gov.securitycenter.microsoft.us`); Microsoft's incidents page
does not state it (§6.1: UNCONFIRMED). Graph's resource is always its host.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

DEFENDER_RESOURCE = "https://api.security.microsoft.com"
GRAPH_RESOURCE = "https://graph.microsoft.com"


@dataclass(frozen=True)
class Cloud:
    name: str
    login_base_url: str
    defender_base_url: str
    portal_base_url: str
    # The App ID URI a Defender token is asked for (`<resource>/.default`).
    defender_resource: str = DEFENDER_RESOURCE
    graph_base_url: str = GRAPH_RESOURCE
    graph_resource: str = GRAPH_RESOURCE

    def resource(self, source: str) -> str:
        """The token resource of an incident source ("defender" or "graph") in this cloud."""
        return self.graph_resource if source == "graph" else self.defender_resource

    def api_base_url(self, source: str) -> str:
        return self.graph_base_url if source == "graph" else self.defender_base_url


CLOUDS: dict[str, Cloud] = {
    "commercial": Cloud(
        "commercial",
        login_base_url="https://login.microsoftonline.com",
        defender_base_url="https://api.security.microsoft.com",
        portal_base_url="https://security.microsoft.com",
    ),
    # GCC tenants live in the commercial Entra ID (login and Graph), with their own
    # Defender API host.
    "gcc": Cloud(
        "gcc",
        login_base_url="https://login.microsoftonline.com",
        defender_base_url="https://api-gcc.security.microsoft.us",
        portal_base_url="https://security.microsoft.com",
        defender_resource="https://api-gcc.security.microsoft.us",
    ),
    "gcc_high": Cloud(
        "gcc_high",
        login_base_url="https://login.microsoftonline.us",
        defender_base_url="https://api-gov.security.microsoft.us",
        portal_base_url="https://security.microsoft.us",
        defender_resource="https://api-gov.security.microsoft.us",
        graph_base_url="https://graph.microsoft.us",
        graph_resource="https://graph.microsoft.us",
    ),
    "dod": Cloud(
        "dod",
        login_base_url="https://login.microsoftonline.us",
        defender_base_url="https://api-gov.security.microsoft.us",
        portal_base_url="https://security.apps.mil",
        defender_resource="https://api-gov.security.microsoft.us",
        graph_base_url="https://dod-graph.microsoft.us",
        graph_resource="https://dod-graph.microsoft.us",
    ),
}

# Clouds whose tenants sign in at the same Entra ID, and so can share one app registration.
# A commercial registration serves GCC; GCC High and DoD need one in Azure Government.
CREDENTIAL_CLOUD = {
    "commercial": "commercial",
    "gcc": "commercial",
    "gcc_high": "gcc_high",
    "dod": "dod",
}


def _fill(template: str, cloud: str) -> str:
    # An override may name the cloud ("https://127.0.0.1:8443/_clouds/{cloud}"): devcloud
    # serves every cloud under its own base URL.
    return template.replace("{cloud}", cloud).rstrip("/")


def get_cloud(
    name: str,
    *,
    login_base_url: str = "",
    defender_base_url: str = "",
    graph_base_url: str = "",
) -> Cloud:
    """The cloud's hosts, with overrides (devcloud) taking the place of Microsoft's. The
    token resources never change: devcloud issues tokens for Microsoft's own App ID URIs."""
    cloud = CLOUDS[name]
    return replace(
        cloud,
        login_base_url=_fill(login_base_url or cloud.login_base_url, name),
        defender_base_url=_fill(defender_base_url or cloud.defender_base_url, name),
        graph_base_url=_fill(graph_base_url or cloud.graph_base_url, name),
    )
