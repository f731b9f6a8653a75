"""`edgetenant` command line: a thin dispatcher; each subcommand lives beside the code it drives.

Every expected failure (a file that is not there, a kubeconfig that does not parse, a server that does
not answer, input the project refuses) ends as one line on stderr naming the problem and a non-zero
exit status, whichever command met it; only a bug prints a traceback. Nothing heavy is imported before
a command's arguments parse, so `--help` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
from collections.abc import Callable

import edgetenant
from edgetenant.errors import ConfigError, EdgeTenantError

# Third-party modules that only an optional extra installs (pyproject.toml), by the extra that has them:
# the operator image leaves them out, so a command that needs one says so instead of a traceback.
OPTIONAL_MODULES: dict[str, str] = {"onnx": "zoo", "onnxruntime": "zoo", "matplotlib": "profiling"}

# name -> ("module:function", one-line help). Each function takes argv and returns an exit code.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("edgetenant.api.cli:main", "validate manifests and print them with defaults applied"),
    "plan": ("edgetenant.placement.cli:main", "place tenants on devices from YAML or a live cluster"),
    "zoo": ("edgetenant.zoo.cli:main", "build the image-classification model zoo as ONNX"),
    "load": ("edgetenant.profiling.loadgen:main", "send closed- or open-loop load to a Triton model"),
    "profile": (
        "edgetenant.profiling.cli:main",
        "sweep concurrency on a real Triton and write a ModelProfile",
    ),
    "tune": ("edgetenant.tuning.cli:main", "run the concurrency control loop against any Triton"),
    "run": ("edgetenant.cli:run", "run the operator"),
}

EXIT_FAILED = 1  # the command could not do its job (bad input, a server that does not answer)
EXIT_INTERRUPTED = 130

# Foreign exceptions that mean "the world is not as the command needs it", by (module, class) anywhere
# in the exception's MRO, so that recognising them imports nothing: -> a prefix for the one line.
_FOREIGN_FAILURES: dict[tuple[str, str], str] = {
    ("kubernetes.config.config_exception", "ConfigException"): "kubeconfig: ",
    ("tritonclient.utils", "InferenceServerException"): "Triton: ",
    ("aiohttp.client_exceptions", "ClientError"): "",
    ("urllib3.exceptions", "HTTPError"): "",
    ("requests.exceptions", "RequestException"): "",
    ("yaml.error", "YAMLError"): "not valid YAML: ",
    ("pydantic_core._pydantic_core", "ValidationError"): "",
}


def describe_failure(error: BaseException) -> str | None:
    """One line for a failure the user can act on; None for anything else (a bug: let it raise)."""
    if isinstance(error, EdgeTenantError):
        return _one_line(str(error) or type(error).__name__)
    for cls in type(error).__mro__:
        prefix = _FOREIGN_FAILURES.get((cls.__module__, cls.__name__))
        if prefix is not None:
            return _one_line(prefix + _message(error))
    if isinstance(error, OSError):
        return _one_line(_os_message(error))
    return None


def _message(error: BaseException) -> str:
    message = getattr(error, "message", None)
    text = message() if callable(message) else str(error)
    return str(text) or type(error).__name__


def _os_message(error: OSError) -> str:
    if isinstance(error, TimeoutError) and not str(error):
        return "timed out"
    if error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror.lower()}"
    return str(error) or type(error).__name__


def _one_line(text: str) -> str:
    return " ".join(text.split())


def bounded(kind: type[int] | type[float], low: float, high: float, unit: str = "") -> Callable[[str], float]:
    """An argparse `type=` that accepts a number of `kind` within [low, high] and says so otherwise."""

    def parse(raw: str) -> float:
        try:
            value = kind(raw)
        except ValueError:
            noun = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{raw!r} is not {noun}") from None
        if not math.isfinite(value) or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g}{unit}, got {raw}")
        return value

    return parse


def run_parser() -> argparse.ArgumentParser:
    """`edgetenant run`'s options (handlers.main parses with the same parser)."""
    parser = argparse.ArgumentParser(prog="edgetenant run", description="Run the edgetenant operator.")
    parser.add_argument(
        "--kubeconfig",
        default=os.environ.get("KUBECONFIG"),
        help="kubeconfig file (default: the pod's ServiceAccount in a cluster, else $KUBECONFIG)",
    )
    parser.add_argument(
        "--standalone",
        action="store_true",
        help="no leader election: this replica always runs the loops (only ever run one such operator)",
    )
    parser.add_argument(
        "--namespace",
        action="append",
        default=[],
        metavar="NS",
        help="serve only the InferenceTenants of this namespace (repeatable; default: every namespace); "
        "nodes and AcceleratorClasses are always watched cluster-wide",
    )
    parser.add_argument(
        "--liveness", default=None, help="serve kopf's liveness probe, e.g. http://0.0.0.0:8081/healthz"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def kubeconfig_problem(path: str | None) -> str | None:
    """What is wrong with a kubeconfig file, before the Kubernetes client trips over it (None: looks fine)."""
    if not path:
        return None
    import yaml  # noqa: PLC0415  (only once a kubeconfig is named)

    try:
        with open(path, encoding="utf-8") as handle:
            document = yaml.safe_load(handle)
    except OSError as error:
        return f"kubeconfig {_os_message(error)}"
    except yaml.YAMLError as error:
        return f"kubeconfig {path}: not valid YAML: {_one_line(str(error))}"
    if not isinstance(document, dict) or not document.get("clusters"):
        return f"kubeconfig {path}: not a kubeconfig (no clusters in it)"
    return None


def run(argv: list[str]) -> int:
    """`edgetenant run`: options are parsed (and --help answered) before kopf and the operator load."""
    args = run_parser().parse_args(argv)
    problem = kubeconfig_problem(args.kubeconfig)
    if problem is not None:
        raise ConfigError(problem)
    from edgetenant import handlers  # noqa: PLC0415  (kopf, the clients and the operator: seconds)

    return handlers.main(argv)


def _usage() -> str:
    lines = ["usage: edgetenant <command> [options]   (edgetenant --version)", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    lines += ["", "`edgetenant <command> --help` shows a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    if args[0] == "--version":
        print(f"edgetenant {edgetenant.__version__}")
        return 0
    name, rest = args[0], args[1:]
    if name not in SUBCOMMANDS:
        known = ", ".join(SUBCOMMANDS)
        print(
            f"edgetenant: unknown command {name!r} (one of: {known}; see edgetenant --help)", file=sys.stderr
        )
        return 2
    module_name, function_name = SUBCOMMANDS[name][0].split(":")
    try:
        function = getattr(importlib.import_module(module_name), function_name)
        result: int = function(rest)
    except ModuleNotFoundError as error:
        extra = OPTIONAL_MODULES.get((error.name or "").split(".")[0])
        if extra is None:
            raise
        print(
            f"edgetenant {name}: needs {error.name!r}, from the optional extra {extra!r}, which this "
            f"installation lacks (the operator image has none): pip install 'edgetenant[{extra}]'",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as error:
        message = describe_failure(error)
        if message is None:
            raise
        print(f"edgetenant {name}: {message}", file=sys.stderr)
        return EXIT_FAILED
    return result


if __name__ == "__main__":
    sys.exit(main())
