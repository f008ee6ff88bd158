"""devcloud: a local emulator of Microsoft Entra ID and the Microsoft 365 Defender incidents
API, for Partner Portal's tests and demo. It is NOT Microsoft.

Stand-alone: imports nothing from `partner_portal` (and is never imported by it).
"""
