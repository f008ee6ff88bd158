"""Realistic, seed-deterministic Defender incidents, and the evolve step that changes them.

The shapes copy Microsoft's `api-list-incidents` example
(tests/fixtures/microsoft/defender-list-incidents.example.json) key for key: every key present,
nulls explicit, entities with all 31 keys, each date-time at its field's precision.
"""

from __future__ import annotations

import hashlib
import random
import re
import uuid
from dataclasses import dataclass, field

from .timefmt import (
    TICKS_PER_SECOND,
    centiseconds_up,
    format_ticks,
    full_ticks,
    now_ticks,
    sql_datetime,
    whole_seconds,
)

SEVERITIES = ["Informational", "Low", "Medium", "High"]
SEVERITY_RANK = {"UnSpecified": 0, "Informational": 1, "Low": 2, "Medium": 3, "High": 4}
STATUSES = ["Active", "InProgress", "Resolved", "Redirected"]
CLASSIFICATIONS = ["Unknown", "FalsePositive", "TruePositive", "InformationalExpectedActivity"]
# Both spellings the docs use are accepted on PATCH; the generator writes the first list.
DETERMINATIONS = [
    "NotAvailable",
    "Apt",
    "Malware",
    "SecurityPersonnel",
    "SecurityTesting",
    "UnwantedSoftware",
    "Other",
    "MultiStagedAttack",
    "CompromisedAccount",
    "Phishing",
    "MaliciousUserActivity",
    "Clean",
    "NoEnoughDataToValidate",
    "ConfirmedActivity",
    "LineOfBusinessApplication",
]
DETERMINATION_ALIASES = [
    "CompromisedUser",
    "ConfirmedUserActivity",
    "InsufficientData",
    "NotMalicious",
    "NotEnoughDataToValidate",
]
TP_DETERMINATIONS = ["Malware", "Phishing", "CompromisedAccount", "MultiStagedAttack"]
TP_DETERMINATIONS += ["MaliciousUserActivity", "UnwantedSoftware"]
FP_DETERMINATIONS = ["Clean", "NoEnoughDataToValidate", "Other"]
IEA_DETERMINATIONS = ["SecurityTesting", "LineOfBusinessApplication", "ConfirmedActivity"]

FIRST = "Adele Alex Megan Lynne Diego Isaiah Johanna Lee Miriam Nestor Patti Pradeep Grady"
FIRST += " Henrietta Irvin Joni Allan Christie Debra Enrico Lidia Emily Ben Sofia Ravi Yuki"
LAST = "Vance Wilber Bowen Robbins Siciliani Langer Lauer Gu Graham Wilke Fernandez Gupta"
LAST += " Archie Mueller Sayers Sherman Deyoung Cline Berry Cattaneo Holloway Braun Chen Rossi"
FIRST_NAMES = FIRST.split()
LAST_NAMES = LAST.split()
ANALYSTS = ["secop1", "secop2", "soc.analyst", "tier2.oncall", "incident.response"]

# One template per kind of alert Defender raises, by service and detection source.
ALERTS = [
    {
        "serviceSource": "MicrosoftDefenderATP",
        "detectionSource": "WindowsDefenderAv",
        "title": "'{threat}' hacktool was detected",
        "description": "Readily available tools, such as hacking programs, can be used by "
        "unauthorized individuals to spy on users. This detection might indicate that "
        "Microsoft Defender Antivirus has stopped the tool from being installed.",
        "category": "Malware",
        "threats": ["Mimikatz", "Rubeus", "Lazagne", "PsExec", "Cobaltstrike"],
        "mitre": [],
        "scope": "endpoint",
        "entities": ["File"],
        "investigation": ["UnsupportedOs", "SuccessfullyRemediated", "Running", "Benign"],
    },
    {
        "serviceSource": "MicrosoftDefenderATP",
        "detectionSource": "WindowsDefenderAtp",
        "title": "Suspicious PowerShell command line",
        "description": "A suspicious PowerShell activity was observed on the machine. This "
        "activity is often used by attackers to download and run malicious code.",
        "category": "Execution",
        "mitre": ["T1059.001", "T1105"],
        "scope": "endpoint",
        "entities": ["Process", "File", "Url"],
        "investigation": ["Running", "PendingApproval", "PartiallyRemediated"],
    },
    {
        "serviceSource": "MicrosoftDefenderATP",
        "detectionSource": "WindowsDefenderAtp",
        "title": "Suspicious credential dump from NTDS.dit",
        "description": "Attackers might dump NTDS.dit to obtain password hashes of every "
        "account in the domain.",
        "category": "CredentialAccess",
        "mitre": ["T1003.003"],
        "scope": "endpoint",
        "entities": ["Process", "User"],
        "investigation": ["Running", "Failed", "Queued"],
    },
    {
        "serviceSource": "MicrosoftDefenderATP",
        "detectionSource": "WindowsDefenderAv",
        "title": "Ransomware behavior detected in the file system",
        "description": "A process created files with extensions associated with ransomware "
        "and modified many files in a short time.",
        "category": "Ransomware",
        "threats": ["LockBit", "BlackCat", "Akira"],
        "mitre": ["T1486"],
        "scope": "endpoint",
        "entities": ["File", "Process"],
        "investigation": ["SuccessfullyRemediated", "PartiallyRemediated"],
    },
    {
        "serviceSource": "MicrosoftCloudAppSecurity",
        "detectionSource": "MCAS",
        "title": "Ransomware activity",
        "description": "The user {display} ({upn}) manipulated {n} files with multiple "
        "extensions ending with an uncommon extension. This is indicative of a potential "
        "ransomware attack.",
        "category": "Impact",
        "mitre": ["T1486"],
        "scope": "user",
        "entities": ["User", "Ip"],
        "investigation": ["UnsupportedAlertType"],
    },
    {
        "serviceSource": "MicrosoftCloudAppSecurity",
        "detectionSource": "MCAS",
        "title": "Impossible travel activity",
        "description": "The user {display} ({upn}) signed in from two distant locations "
        "within a time period shorter than the travel time between them.",
        "category": "InitialAccess",
        "mitre": ["T1078"],
        "scope": "user",
        "entities": ["User", "Ip", "Ip"],
        "investigation": ["UnsupportedAlertType"],
    },
    {
        "serviceSource": "MicrosoftCloudAppSecurity",
        "detectionSource": "MCAS",
        "title": "Mass download by a single user",
        "description": "The user {display} ({upn}) downloaded {n} files from SharePoint in a "
        "single session.",
        "category": "Exfiltration",
        "mitre": ["T1530"],
        "scope": "user",
        "entities": ["User", "Ip"],
        "investigation": ["UnsupportedAlertType"],
    },
    {
        "serviceSource": "OfficeATP",
        "detectionSource": "OfficeATP",
        "title": "Email reported by user as malware or phish",
        "description": "This alert is triggered when any email message is reported as malware "
        "or phish by users -V1.0.0.2",
        "category": "InitialAccess",
        "mitre": [],
        "scope": "mail",
        "entities": ["MailBox", "MailMessage", "MailCluster", "Ip"],
        "investigation": ["Queued", "Benign", "SuccessfullyRemediated"],
        "assignedTo": "Automation",
    },
    {
        "serviceSource": "OfficeATP",
        "detectionSource": "OfficeATP",
        "title": "Email messages containing malicious URL removed after delivery",
        "description": "Emails with a malicious URL were delivered and later removed. -V1.0.0.3",
        "category": "InitialAccess",
        "mitre": ["T1566.002"],
        "scope": "mail",
        "entities": ["MailBox", "MailMessage", "Url"],
        "investigation": ["SuccessfullyRemediated", "Running"],
        "assignedTo": "Automation",
    },
    {
        "serviceSource": "MicrosoftDefenderForOffice365",
        "detectionSource": "OfficeATP",
        "title": "A potentially malicious URL click was detected",
        "description": "A user clicked a link in an email that was later identified as malicious.",
        "category": "InitialAccess",
        "mitre": ["T1566.002", "T1204.001"],
        "scope": "mail",
        "entities": ["MailBox", "Url", "User"],
        "investigation": ["Running", "Benign"],
    },
    {
        "serviceSource": "AzureAdIdentityProtection",
        "detectionSource": "AzureAdIdentityProtection",
        "title": "Unfamiliar sign-in properties",
        "description": "The sign-in of {display} had properties that are unfamiliar for this "
        "user: a new IP address, location and browser.",
        "category": "InitialAccess",
        "mitre": ["T1078.004"],
        "scope": "user",
        "entities": ["User", "Ip"],
        "investigation": ["UnsupportedAlertType"],
    },
    {
        "serviceSource": "AzureATP",
        "detectionSource": "AzureATP",
        "title": "Suspected DCSync attack (replication of directory services)",
        "description": "{display} sent a replication request from a machine that is not a "
        "domain controller.",
        "category": "CredentialAccess",
        "mitre": ["T1003.006"],
        "scope": "endpoint",
        "entities": ["User", "Ip"],
        "investigation": ["UnsupportedAlertType"],
    },
    {
        "serviceSource": "AzureATP",
        "detectionSource": "AzureATP",
        "title": "Suspected brute force attack (LDAP)",
        "description": "A brute force attack using simple bind against {n} accounts was "
        "attempted from a single device.",
        "category": "CredentialAccess",
        "mitre": ["T1110.003"],
        "scope": "user",
        "entities": ["User", "Ip"],
        "investigation": ["UnsupportedAlertType"],
    },
    {
        "serviceSource": "Microsoft365Defender",
        "detectionSource": "Microsoft365Defender",
        "title": "Suspicious inbox manipulation rule",
        "description": "A suspicious inbox rule was set on the mailbox of {display}; "
        "attackers use such rules to hide replies from the victim.",
        "category": "DefenseEvasion",
        "mitre": ["T1564.008"],
        "scope": "mail",
        "entities": ["MailBox", "User", "Ip"],
        "investigation": ["UnsupportedAlertType"],
    },
]

PLATFORMS = [
    ("Windows11", "23H2", 22631),
    ("Windows11", "24H2", 26100),
    ("Windows10", "22H2", 19045),
    ("WindowsServer2019", "1809", 17763),
    ("WindowsServer2022", "21H2", 20348),
]
PROCESSES = [
    ("powershell.exe", "C:\\Windows\\System32\\WindowsPowerShell\\v1.0"),
    ("rundll32.exe", "C:\\Windows\\System32"),
    ("cmd.exe", "C:\\Windows\\System32"),
    ("wmic.exe", "C:\\Windows\\System32\\wbem"),
    ("svchost.exe", "C:\\Windows\\System32"),
]
COMMANDS = [
    "powershell.exe -nop -w hidden -enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAIAA=",
    "rundll32.exe C:\\Users\\Public\\update.dll,DllRegisterServer",
    'cmd.exe /c "whoami /all & net group "Domain Admins" /domain"',
    'wmic.exe process call create "C:\\ProgramData\\svc.exe"',
    'ntdsutil.exe "ac i ntds" ifm "create full c:\\temp" q q',
]
FILES = ["update.dll", "invoice_2026.docm", "svc.exe", "payload.ps1", "mimikatz.exe"]
URLS = [
    "https://login-microsoftonline.help/common/oauth2",
    "http://cdn-update.example-malware.net/a.ps1",
    "https://sharepoint-docs.review/file/view",
    "https://storage.invoice-portal.biz/download",
]
SUBJECTS = ["[EXTERNAL] Attention", "Invoice overdue", "Your password expires today"]
SUBJECTS += ["Shared document: Q3 budget", "Voicemail received"]
TAGS = ["Ransomware", "BEC", "Phishing campaign", "VIP", "Pen test", "Follow-up"]
COMMENTS = [
    "Isolated the device, collecting the investigation package.",
    "User confirmed they did not click the link.",
    "Password reset and sessions revoked.",
    "Benign: scheduled admin script.",
    "Escalated to tier 2.",
]


# Every entity carries all 31 keys of Microsoft's example, in its order, null when unused.
ENTITY_KEYS = [
    "entityType",
    "sha1",
    "sha256",
    "fileName",
    "filePath",
    "processId",
    "processCommandLine",
    "processCreationTime",
    "parentProcessId",
    "parentProcessCreationTime",
    "ipAddress",
    "url",
    "accountName",
    "domainName",
    "userSid",
    "aadUserId",
    "userPrincipalName",
    "mailboxDisplayName",
    "mailboxAddress",
    "clusterBy",
    "sender",
    "recipient",
    "subject",
    "deliveryAction",
    "securityGroupId",
    "securityGroupName",
    "registryHive",
    "registryKey",
    "registryValueType",
    "registryValue",
    "deviceId",
]


def _words(category: str) -> str:
    """`CredentialAccess` -> `Credential access`, as incident names spell tactics."""
    words = re.findall(r"[A-Z][a-z]*", category)
    return " ".join([words[0], *(w.lower() for w in words[1:])]) if words else category


@dataclass
class Incident:
    """One incident of one tenant; `data` is the API representation. A raw payload stored
    through the control API keeps its exact bytes in `raw` (and may have a string ID)."""

    incident_id: int | str
    created: int | None
    updated: int
    data: dict
    raw: bytes | None = field(default=None, repr=False)
    json_cache: bytes | None = field(default=None, repr=False)
    graph_cache: dict = field(default_factory=dict, repr=False)
    extra: dict = field(default_factory=dict)  # Graph-only: description, summary, …

    def invalidate(self) -> None:
        """Forget the pre-serialized forms after a change."""
        self.json_cache = None
        self.graph_cache.clear()


class Generator:
    """Makes incidents for one tenant. Deterministic for a given seed and clock."""

    def __init__(self, *, tenant_id: str, domain: str, seed: int) -> None:
        self.tenant_id = tenant_id
        self.rng = random.Random(seed)
        name = domain.split(".")[0]
        self.mail_domain = f"{name}.com" if domain.endswith(".onmicrosoft.com") else domain
        self.users = [self._user(name) for _ in range(12)]
        self.devices = [self._device(name) for _ in range(10)]

    # --- people and things -------------------------------------------------------------
    def _guid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _hex(self, n: int) -> str:
        return "".join(self.rng.choice("0123456789abcdef") for _ in range(n))

    def _ip(self) -> str:
        return ".".join(str(self.rng.randint(11, 223)) for _ in range(4))

    def _user(self, org: str) -> dict:
        first, last = self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)
        account = f"{first}{last[0]}".lower()
        return {
            "display": f"{first} {last}",
            "account": account,
            "upn": f"{account}@{self.mail_domain}",
            "netbios": org.upper()[:15],
            "sid": "S-1-5-21-{}-{}-{}-{}".format(
                *(self.rng.randint(10**8, 4 * 10**9) for _ in range(3)),
                self.rng.randint(1000, 9999999),
            ),
            "aad": self._guid(),
        }

    def _device(self, org: str) -> dict:
        platform, version, build = self.rng.choice(PLATFORMS)
        prefix = "srv" if "Server" in platform else self.rng.choice(["lt", "ws", "pc"])
        return {
            "mdatpDeviceId": self._hex(40),
            "aadDeviceId": self._guid() if prefix != "srv" else None,
            "deviceDnsName": f"{prefix}-{self.rng.randint(100, 999)}.corp.{self.mail_domain}",
            "osPlatform": platform,
            "version": version,
            "osProcessor": "x64",
            "osBuild": build,
            "healthStatus": self.rng.choice(["Active", "Active", "Active", "Inactive"]),
            "riskScore": self.rng.choice(["None", "Low", "Medium", "High"]),
            "rbacGroupName": self.rng.choice(["Workstations", "Servers", "WDATP-Ring0"]),
            "rbacGroupId": self.rng.randint(1, 40),
            "firstSeen": format_ticks(
                full_ticks(now_ticks() - self.rng.randint(30, 900) * 86400 * 10**7)
            ),
        }

    # --- entities ------------------------------------------------------------------------
    def _entity(self, kind: str, user: dict, device: dict | None, when: int) -> dict:
        rng = self.rng
        e: dict = dict.fromkeys(ENTITY_KEYS)
        e["entityType"] = kind
        if kind == "User":
            e |= {
                "accountName": user["account"],
                "domainName": user["netbios"],
                "userSid": user["sid"],
                "aadUserId": user["aad"],
                "userPrincipalName": user["upn"],
            }
        elif kind == "Ip":
            e["ipAddress"] = self._ip()
        elif kind == "Url":
            e["url"] = rng.choice(URLS)
        elif kind == "File":
            name = rng.choice(FILES)
            e |= {
                "sha1": hashlib.sha1(name.encode() + self._hex(8).encode()).hexdigest(),  # noqa: S324
                # Microsoft's example File has no sha256: not every sensor reports one.
                "sha256": hashlib.sha256(name.encode() + self._hex(8).encode()).hexdigest()
                if rng.random() < 0.5
                else None,
                "fileName": name,
                "filePath": rng.choice(
                    ["C:\\Users\\Public", "C:\\ProgramData", f"C:\\Users\\{user['account']}"]
                ),
            }
        elif kind == "Process":
            exe, path = rng.choice(PROCESSES)
            e |= {
                "sha1": hashlib.sha1(exe.encode()).hexdigest(),  # noqa: S324
                "fileName": exe,
                "filePath": path,
                "processId": rng.randint(400, 20000),
                "processCommandLine": rng.choice(COMMANDS),
                "processCreationTime": format_ticks(full_ticks(when - rng.randint(1, 600) * 10**7)),
                "parentProcessId": rng.randint(400, 20000),
                "parentProcessCreationTime": format_ticks(
                    full_ticks(when - rng.randint(600, 9000) * 10**7)
                ),
                "accountName": user["account"],
                "domainName": user["netbios"],
                "userSid": user["sid"],
            }
        elif kind == "MailBox":
            e |= {
                "userPrincipalName": user["upn"],
                "mailboxDisplayName": user["display"],
                "mailboxAddress": user["upn"],
            }
        elif kind == "MailMessage":
            e |= {
                "userPrincipalName": user["upn"],
                "sender": f"{rng.choice(['billing', 'noreply', 'it-support'])}@"
                f"{rng.choice(['mail.contoso.co.in', 'secure-docs.biz', 'outlook-verify.net'])}",
                "recipient": user["upn"],
                "subject": rng.choice(SUBJECTS),
                "deliveryAction": rng.choice(["Delivered", "Blocked", "Replaced", None]),
            }
        elif kind == "MailCluster":
            e["clusterBy"] = rng.choice(
                ["Subject;P2SenderDomain;ContentType", "BodyFingerprintBin1;SenderIp;ContentType"]
            )
        if device is not None and kind in ("File", "Process"):
            e["deviceId"] = device["mdatpDeviceId"]
        return e

    # --- alerts and incidents ------------------------------------------------------------
    def alert(self, incident_id: int, when: int, template: dict | None = None) -> dict:
        rng = self.rng
        t = template or rng.choice(ALERTS)
        user = rng.choice(self.users)
        device = rng.choice(self.devices) if t["scope"] == "endpoint" else None
        threat = rng.choice(t["threats"]) if "threats" in t else None
        fmt = {"threat": threat, "display": user["display"], "upn": user["upn"]}
        fmt["n"] = rng.randint(20, 400)
        first = when - rng.randint(60, 3 * 3600) * TICKS_PER_SECOND - rng.randint(0, 10**7)
        prefix = {"MicrosoftDefenderATP": "da", "OfficeATP": "fa", "AzureATP": "aa"}
        if t["serviceSource"] == "MicrosoftDefenderATP":
            alert_id = f"da{rng.randint(10**17, 10**18 - 1)}_{rng.randint(10**8, 10**9)}"
        else:
            alert_id = prefix.get(t["serviceSource"], "ca") + self._guid()
        # Endpoint sensors report activity to the tick; cloud and mail services to the second.
        activity = full_ticks if t["serviceSource"] == "MicrosoftDefenderATP" else whole_seconds
        kinds = list(t["entities"])
        entities = [self._entity(k, user, device, first) for k in kinds]
        return {
            "alertId": alert_id,
            "providerAlertId": alert_id,
            "incidentId": incident_id,
            "serviceSource": t["serviceSource"],
            "creationTime": format_ticks(full_ticks(when)),
            "lastUpdatedTime": format_ticks(sql_datetime(when + rng.randint(1, 9) * 10**6)),
            "resolvedTime": None,
            "firstActivity": format_ticks(activity(first)),
            "lastActivity": format_ticks(
                activity(min(when, first + rng.randint(0, 1800) * TICKS_PER_SECOND))
            ),
            "title": t["title"].format(**fmt),
            "description": t["description"].format(**fmt),
            "category": t["category"],
            "status": "New",
            "severity": rng.choice(SEVERITIES[1:] if t["mitre"] else SEVERITIES),
            "investigationId": rng.randint(1000, 99999) if rng.random() < 0.4 else None,
            "investigationState": rng.choice(t["investigation"]),
            "classification": None,
            "determination": None,
            "detectionSource": t["detectionSource"],
            "detectorId": self._guid(),
            "assignedTo": t.get("assignedTo"),
            "actorName": None,
            "threatFamilyName": threat,
            "mitreTechniques": list(t["mitre"]),
            "devices": [{k: v for k, v in device.items()}] if device else [],
            "entities": entities,
        }

    def incident(self, incident_id: int, created: int, updated: int, alerts_n: int) -> Incident:
        rng = self.rng
        created = sql_datetime(created, seven_digits=True)
        updated = centiseconds_up(max(updated, created))
        first_template = rng.choice(ALERTS)
        alerts = [self.alert(incident_id, created - rng.randint(1, 9) * 10**6, first_template)]
        for _ in range(alerts_n - 1):
            when = rng.randint(created, max(created + 1, updated))
            alerts.append(self.alert(incident_id, when))
        severity = max((a["severity"] for a in alerts), key=SEVERITY_RANK.__getitem__)
        data = {
            "incidentId": incident_id,
            "incidentUri": (
                f"https://security.microsoft.com/incidents/{incident_id}?tid={self.tenant_id}"
            ),
            "redirectIncidentId": None,
            "incidentName": self._name(alerts),
            "createdTime": format_ticks(created),
            "lastUpdateTime": format_ticks(updated),
            "assignedTo": None,
            "classification": "Unknown",
            "determination": "NotAvailable",
            "status": "Active",
            "severity": severity,
            "tags": [],
            "comments": [],
            "alerts": alerts,
        }
        incident = Incident(incident_id, created, updated, data)
        roll = rng.random()
        if roll < 0.25:
            self._assign(incident, updated)
            data["status"] = "InProgress"
        elif roll < 0.55:
            self._assign(incident, updated)
            self._resolve(incident, updated)
        if rng.random() < 0.15:
            data["tags"] = rng.sample(TAGS, rng.randint(1, 2))
        if rng.random() < 0.2:
            self._comment(incident, rng.randint(created, updated))
        return incident

    def _name(self, alerts: list[dict]) -> str:
        categories = sorted({_words(a["category"]) for a in alerts})
        devices = {d["mdatpDeviceId"] for a in alerts for d in a["devices"]}
        if len(categories) > 1:
            pair = " & ".join(categories[:2])
            where = "on multiple endpoints" if len(devices) > 1 else "on one endpoint"
            if not devices:
                where = "involving multiple users"
            return f"Multi-stage incident involving {pair} {where}"
        title = alerts[0]["title"]
        if devices:
            return f"{title} on {'one endpoint' if len(devices) == 1 else 'multiple endpoints'}"
        if alerts[0]["serviceSource"] in ("OfficeATP", "MicrosoftDefenderForOffice365"):
            return title
        return f"{title} involving one user"

    def _assign(self, incident: Incident, when: int) -> None:
        analyst = self.rng.choice(ANALYSTS)
        incident.data["assignedTo"] = f"{analyst}@{self.mail_domain}"

    def _resolve(self, incident: Incident, when: int) -> None:
        rng, data = self.rng, incident.data
        data["status"] = "Resolved"
        classification = rng.choice(
            ["TruePositive", "TruePositive", "FalsePositive", "InformationalExpectedActivity"]
        )
        data["classification"] = classification
        data["determination"] = rng.choice(
            {
                "TruePositive": TP_DETERMINATIONS,
                "FalsePositive": FP_DETERMINATIONS,
                "InformationalExpectedActivity": IEA_DETERMINATIONS,
            }[classification]
        )
        for alert in data["alerts"]:
            alert["status"] = "Resolved"
            alert["resolvedTime"] = format_ticks(sql_datetime(when))
            alert["lastUpdatedTime"] = format_ticks(sql_datetime(when))
            alert["classification"] = data["classification"]
            alert["determination"] = data["determination"]

    def _comment(self, incident: Incident, when: int) -> None:
        author = (
            incident.data.get("assignedTo") or f"{self.rng.choice(ANALYSTS)}@{self.mail_domain}"
        )
        incident.data["comments"].append(
            {
                "comment": self.rng.choice(COMMENTS),
                "createdBy": author,
                "createdTime": format_ticks(full_ticks(when)),
            }
        )

    def change(self, incident: Incident, when: int) -> None:
        """One realistic change by the SOC or by Defender itself; `when` becomes lastUpdateTime."""
        rng, data = self.rng, incident.data
        status = data["status"]
        roll = rng.random()
        if status == "Active":
            if roll < 0.5:
                self._assign(incident, when)
                data["status"] = "InProgress"
            elif roll < 0.8:
                data["alerts"].append(self.alert(incident.incident_id, when))
                self._reseverity(incident)
            else:
                self._assign(incident, when)
                self._resolve(incident, when)
        elif status == "InProgress":
            if roll < 0.5:
                self._resolve(incident, when)
            elif roll < 0.75:
                self._comment(incident, when)
            else:
                data["alerts"].append(self.alert(incident.incident_id, when))
                self._reseverity(incident)
        elif status == "Resolved":
            # Reopened: a new alert joins the incident.
            data["status"] = "Active"
            data["classification"], data["determination"] = "Unknown", "NotAvailable"
            data["alerts"].append(self.alert(incident.incident_id, when))
            self._reseverity(incident)
        else:
            self._comment(incident, when)
        incident.updated = when
        data["lastUpdateTime"] = format_ticks(when)

    def _reseverity(self, incident: Incident) -> None:
        alerts = incident.data["alerts"]
        incident.data["severity"] = max(
            (a["severity"] for a in alerts), key=SEVERITY_RANK.__getitem__
        )
