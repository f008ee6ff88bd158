from __future__ import annotations

import pytest

from partner_portal.microsoft import tokens
from tests.microsoft.fake_entra import fake_login  # noqa: F401  (a fixture)


@pytest.fixture(autouse=True)
def fresh_msal_apps():
    """Each test starts without this process's MSAL apps (they cache discovery and errors)."""
    tokens.forget_all()
    yield
    tokens.forget_all()
