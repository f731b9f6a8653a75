"""`edgetenant` command line: a thin dispatcher; each subcommand lives beside the code it drives."""

from __future__ import annotations

import importlib
import sys

import edgetenant

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
    "run": ("edgetenant.handlers:main", "run the operator"),
}


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
        print(f"edgetenant: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
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
    return result


if __name__ == "__main__":
    sys.exit(main())
