"""Suite-wide settings: property tests must not fail on a slow or busy machine, and
everything under tests/integration carries the `integration` marker (it needs the
local stack), so `-m "not integration"` runs the rest without emulators."""

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("aperture", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("aperture")

INTEGRATION = Path(__file__).resolve().parent / "integration"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.resolve().is_relative_to(INTEGRATION):
            item.add_marker(pytest.mark.integration)
