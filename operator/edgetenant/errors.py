"""The project's own small error tree. Adapters translate foreign errors into these."""


class EdgeTenantError(Exception):
    """Base of every error the project raises on purpose."""


class ConfigError(EdgeTenantError):
    """A setting or input file is wrong; the message says what and where."""


class TransientError(EdgeTenantError):
    """Worth retrying later: a timeout, a conflict, a server that is starting."""


class ConflictError(TransientError):
    """The object changed since it was read (HTTP 409): read it again and recompute."""


class PermanentError(EdgeTenantError):
    """Retrying will not help until something changes (spec, class, cluster)."""


class ModelLoadError(EdgeTenantError):
    """Triton refused to load a model; carries Triton's own message."""


class MetricsUnavailable(TransientError):
    """Prometheus cannot be reached or has no recent samples."""
