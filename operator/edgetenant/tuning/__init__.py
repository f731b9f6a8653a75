"""Concurrency autotuning: the pure controller (``step``), its data, and a simulated device.

``edgetenant.tuning.loop`` (reads Prometheus, applies through Triton) and ``.cli`` are the
edges; importing this package does no I/O.
"""

from edgetenant.api.models import BatchingMode
from edgetenant.tuning.data import (
    Action,
    Decision,
    LearnedPoint,
    Mode,
    Probe,
    Signals,
    TunerConfig,
    TunerState,
    config_for_tenant,
    initial_state,
)
from edgetenant.tuning.policy import bounds, load_failed, not_applied, step

__all__ = [
    "Action",
    "BatchingMode",
    "Decision",
    "LearnedPoint",
    "Mode",
    "Probe",
    "Signals",
    "TunerConfig",
    "TunerState",
    "bounds",
    "config_for_tenant",
    "initial_state",
    "load_failed",
    "not_applied",
    "step",
]
