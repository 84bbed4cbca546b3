"""Suite-wide settings: property tests must not fail on a slow or busy machine."""

from hypothesis import HealthCheck, settings

settings.register_profile("aperture", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("aperture")
