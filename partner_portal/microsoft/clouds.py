"""Login and Defender API hosts per Microsoft cloud.

Reference: https://learn.microsoft.com/en-us/defender-xdr/usgov
"""

from __future__ import annotations

from dataclasses import dataclass

DEFENDER_RESOURCE = "https://api.security.microsoft.com"


@dataclass(frozen=True)
class Cloud:
    name: str
    login_base_url: str
    defender_base_url: str
    portal_base_url: str


CLOUDS: dict[str, Cloud] = {
    "commercial": Cloud(
        "commercial",
        "https://login.microsoftonline.com",
        "https://api.security.microsoft.com",
        "https://security.microsoft.com",
    ),
    "gcc": Cloud(
        "gcc",
        "https://login.microsoftonline.com",
        "https://api-gcc.security.microsoft.us",
        "https://security.microsoft.com",
    ),
    "gcc_high": Cloud(
        "gcc_high",
        "https://login.microsoftonline.us",
        "https://api-gov.security.microsoft.us",
        "https://security.microsoft.us",
    ),
    "dod": Cloud(
        "dod",
        "https://login.microsoftonline.us",
        "https://api-gov.security.microsoft.us",
        "https://security.apps.mil",
    ),
}


def get_cloud(name: str, *, login_base_url: str = "", defender_base_url: str = "") -> Cloud:
    """The cloud's hosts, with overrides (devcloud) taking the place of Microsoft's."""
    cloud = CLOUDS[name]
    return Cloud(
        cloud.name,
        (login_base_url or cloud.login_base_url).rstrip("/"),
        (defender_base_url or cloud.defender_base_url).rstrip("/"),
        cloud.portal_base_url,
    )
