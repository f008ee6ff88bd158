from __future__ import annotations

import pytest

from partner_portal.microsoft import tokens


@pytest.fixture(autouse=True)
def fresh_msal_apps():
    """Each test starts without this process's MSAL apps (they cache discovery and errors)."""
    tokens.forget_all()
    yield
    tokens.forget_all()
