"""Measuring models on a real Triton: the load generator and the concurrency profiler."""
