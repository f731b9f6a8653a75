"""Edges: the only modules that talk to Kubernetes, Triton and Prometheus; foreign errors end here."""
