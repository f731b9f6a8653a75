"""edgetenant: placement and live concurrency tuning of inference tenants on edge clusters."""

__version__ = "0.1.0"
