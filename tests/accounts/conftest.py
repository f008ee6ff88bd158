from tests.entra_fixture import entra  # noqa: F401
