"""`edgetenant validate`: check manifests offline and print them with defaults applied.

Each object of the edgetenant.io group is checked the way the API server checks it (strict
unknown-field check, schema, defaults, CEL rules from the generated CRDs); other objects (Nodes,
Namespaces, ...) pass through unchanged. Errors go to stderr, one per line, naming the file,
the object and the field; the resolved objects go to stdout. Exit status 1 on any error.

Every error is reported in one pass. The API server stops at the first stage that fails (unknown
fields, then the schema, then the CEL rules), so fixing one error could reveal the next; here the
later stages also run, on the object without its unknown fields, and the CEL rules on whatever the
schema errors leave to judge, so one run lists all there is to fix.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from edgetenant.api.models import iter_documents, manifest_files
from edgetenant.api.validation import (
    FieldError,
    ValidationResult,
    cel_errors,
    crd_schema,
    is_edgetenant,
    validate_manifest,
)

_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _describe(obj: dict[str, Any]) -> str:
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    assert isinstance(metadata, dict)
    name = metadata.get("name") or metadata.get("generateName") or "<unnamed>"
    namespace = metadata.get("namespace")
    return f"{obj.get('kind', '<no kind>')} {namespace + '/' if namespace else ''}{name}"


def _read(source: str) -> list[tuple[str, str]]:
    """(label, text) for each file named by `source` ('-' is stdin)."""
    if source == "-":
        return [("<stdin>", sys.stdin.read())]
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"{source}: no such file or directory")
    return [(str(p), p.read_text()) for p in manifest_files([path])]


def _without(document: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    """A copy of the document with the fields at these paths (`spec.a[0].b`) removed."""
    body = copy.deepcopy(document)
    for path in paths:
        keys: list[str | int] = [int(i) if i else k for k, i in _PATH_PART.findall(path)]
        parent: Any = body
        for key in keys[:-1]:
            parent = parent[key]
        parent.pop(keys[-1], None)
    return body


def _covered(path: str, by: set[str]) -> bool:
    return any(path == p or path.startswith((p + ".", p + "[")) for p in by)


def every_error(document: dict[str, Any]) -> ValidationResult:
    """`validate_manifest`, with the stages the API server would skip after a failure run too."""
    first = validate_manifest(document)
    errors = list(first.errors)
    unknown = [e.path for e in errors if e.kind == "unknown field"]
    result = validate_manifest(_without(document, unknown)) if unknown else first
    if unknown:
        errors += result.errors
    schema_paths = {e.path for e in result.errors if e.kind != "unknown field"}
    if schema_paths and result.obj.get("kind"):
        # CEL was skipped: judge by every rule that still evaluates cleanly, away from the bad fields.
        errors += [
            e
            for e in cel_errors(result.obj, crd_schema(str(result.obj["kind"])))
            if "evaluating rule:" not in e.detail and not _covered(e.path, schema_paths)
        ]
    unique: list[FieldError] = list(dict.fromkeys(errors))
    return ValidationResult(first.obj, unique, first.resource if not unique else None)


def validate_sources(sources: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """Resolved objects and error lines for the given files and directories."""
    resolved: list[dict[str, Any]] = []
    problems: list[str] = []
    for source in sources:
        try:
            files = _read(source)
        except (FileNotFoundError, OSError) as exc:
            problems.append(str(exc))
            continue
        for label, text in files:
            try:
                documents = iter_documents(text)
            except (yaml.YAMLError, ValueError) as exc:
                problems.append(f"{label}: not valid YAML: {exc}")
                continue
            for document in documents:
                if not is_edgetenant(document):
                    resolved.append(document)
                    continue
                result = every_error(document)
                problems += [f"{label}: {_describe(document)}: {error}" for error in result.errors]
                if result.ok:
                    resolved.append(result.obj)
    return resolved, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="edgetenant validate",
        description="Validate InferenceTenant, AcceleratorClass and ModelProfile manifests the way the "
        "API server will, and print them with defaults applied.",
    )
    parser.add_argument(
        "-f",
        "--filename",
        action="append",
        required=True,
        metavar="FILE_OR_DIR",
        help="manifest file, directory (walked for *.yaml) or - for stdin; repeatable",
    )
    parser.add_argument(
        "-o", "--output", choices=["yaml", "json", "none"], default="yaml", help="output format"
    )
    args = parser.parse_args(argv)

    resolved, problems = validate_sources(args.filename)
    if args.output == "yaml":
        sys.stdout.write(yaml.safe_dump_all(resolved, sort_keys=False, width=120))
    elif args.output == "json":
        print(json.dumps({"apiVersion": "v1", "kind": "List", "items": resolved}, indent=2))
    sys.stdout.flush()  # keep the resolved objects ahead of the error report on a shared terminal
    for problem in problems:
        print(problem, file=sys.stderr)
    ours = sum(1 for obj in resolved if is_edgetenant(obj))
    verdict = f"{len(problems)} problem(s)" if problems else "all valid"
    print(f"edgetenant validate: {ours} object(s) valid, {verdict}", file=sys.stderr)
    return 1 if problems else 0
