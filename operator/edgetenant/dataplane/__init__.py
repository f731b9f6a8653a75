"""What runs in and around Triton: backend shims, the model fetcher, local launchers.

``onnx_model.py`` and ``tflite_model.py`` are self-contained Triton Python-backend models
(copied into a model repository as ``<model>/<version>/model.py``); ``fetch`` is the
init container's model fetcher; ``local`` starts Triton and Prometheus as local processes.
"""
