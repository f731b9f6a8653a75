"""Concurrency autotuning: the pure controller (``step``), its data, and a simulated device.

``edgetenant.tuning.loop`` (reads Prometheus, applies through Triton) and ``.cli`` are the
edges; importing this package does no I/O.
"""

from edgetenant.tuning.data import (
    Action,
    BatchingMode,
    Decision,
    LearnedPoint,
    Mode,
    Probe,
    Signals,
    TunerConfig,
    TunerState,
    initial_state,
)
from edgetenant.tuning.policy import bounds, load_failed, step

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
    "initial_state",
    "load_failed",
    "step",
]
