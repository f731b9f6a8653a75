"""Loaded before any test module: nothing the suite runs may send a packet off loopback.

NB: ONNX Runtime 1.32's Linux wheel ships Microsoft's 1DS telemetry: about 9 s after a session is
created it resolves and posts to ``mobile.events.data.microsoft.com`` (events are queued under
``~/.cache/Microsoft/DeveloperTools/.onnxruntime`` and sent by the next process that lives long
enough). ``onnxruntime.disable_telemetry_events()`` does not stop it; ``ORT_DISABLE_TELEMETRY=1`` does,
but only when set before ``onnxruntime`` is first imported, hence here. Child processes (the operator,
the lab) inherit it. The data-plane venv's ONNX Runtime (1.20) has no such code; OpenVINO's own
telemetry is kept out by ``edgetenant.zoo.export.import_openvino`` and the OpenVINO shim.
"""

from __future__ import annotations

import os

os.environ["ORT_DISABLE_TELEMETRY"] = "1"
