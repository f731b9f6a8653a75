"""Validate a manifest offline the way the Kubernetes API server validates a custom resource.

The steps follow the API server's order for a create with strict field validation:
unknown fields are refused; nulls are pruned; schema defaults are applied; the structural
schema (types, enums, bounds, required) is checked; then every CEL rule in the generated
CRD is evaluated. Error texts copy the API server's wording (`spec.model.format: Unsupported
value: ...`, `unknown field "spec.foo"`, the CEL rule's message), so what `edgetenant
validate` says is what `kubectl apply` will say. The schemas and rules are the ones `crdgen`
writes to crds/, so the two cannot drift apart.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import celpy
import jsonschema
from celpy.adapter import json_to_cel
from celpy.celtypes import BoolType
from celpy.evaluation import CELEvalError
from pydantic import ValidationError

from edgetenant.api.crdgen import all_crds
from edgetenant.api.models import API_VERSION, GROUP, RESOURCE_KINDS, Resource, iter_documents, manifest_files
from edgetenant.errors import ConfigError

Schema = dict[str, Any]


@dataclass(frozen=True)
class FieldError:
    """One thing wrong with a manifest, worded like the API server words it."""

    path: str
    kind: str
    detail: str = ""

    def __str__(self) -> str:
        if self.kind == "unknown field":
            return f'unknown field "{self.path}"'
        if self.kind == "no matches":
            return self.detail
        return f"{self.path}: {self.kind}: {self.detail}" if self.detail else f"{self.path}: {self.kind}"


@dataclass(frozen=True)
class ValidationResult:
    """The manifest with defaults applied (as the API server would store it) and what is wrong."""

    obj: dict[str, Any]
    errors: list[FieldError] = field(default_factory=list)
    resource: Resource | None = None

    @property
    def ok(self) -> bool:
        return not self.errors


def is_edgetenant(obj: Mapping[str, Any]) -> bool:
    """Whether the object claims to belong to our API group (any version)."""
    return str(obj.get("apiVersion", "")).split("/")[0] == GROUP


@functools.cache
def crd_schema(kind: str) -> Schema:
    """The openAPIV3Schema that crds/ holds for `kind`."""
    schema: Schema = all_crds()[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def validate_manifest(obj: Mapping[str, Any]) -> ValidationResult:
    """Validate one object of our group against its CRD schema and CEL rules."""
    body = copy.deepcopy(dict(obj))
    kind = str(body.get("kind", ""))
    if body.get("apiVersion") != API_VERSION or kind not in RESOURCE_KINDS:
        message = f'no matches for kind "{kind}" in version "{body.get("apiVersion", "")}"'
        return ValidationResult(body, [FieldError("", "no matches", message)])
    schema = crd_schema(kind)

    unknown = list(_unknown_fields(body, schema, ""))
    if unknown:
        return ValidationResult(body, [FieldError(path, "unknown field") for path in unknown])

    _prune_nulls(body)
    apply_defaults(body, schema)
    errors = _metadata_errors(body)
    errors += schema_errors(body, schema)
    if not errors:
        errors += cel_errors(body, schema)
    if errors:
        return ValidationResult(body, errors)
    try:
        resource = RESOURCE_KINDS[kind].model_validate(body)
    except ValidationError as exc:  # the schema let through something the models refuse: say so
        return ValidationResult(body, [_pydantic_error(e) for e in exc.errors()])
    return ValidationResult(body, [], resource)


def load_validated(paths: str | Path | Sequence[str | Path]) -> list[Resource | dict[str, Any]]:
    """Like `models.load_objects`, with API-server validation and defaults.

    Raises ConfigError naming every problem (file, object, field) at once.
    """
    path_list: Sequence[str | Path] = [paths] if isinstance(paths, str | Path) else paths
    objects: list[Resource | dict[str, Any]] = []
    problems: list[str] = []
    for path in manifest_files(path_list):
        for document in iter_documents(path.read_text()):
            if not is_edgetenant(document):
                objects.append(document)
                continue
            result = validate_manifest(document)
            problems += [f"{path}: {document.get('kind')} {_name(document)}: {e}" for e in result.errors]
            if result.resource is not None:
                objects.append(result.resource)
    if problems:
        raise ConfigError("\n".join(problems))
    return objects


def _name(document: Mapping[str, Any]) -> str:
    metadata = document.get("metadata") or {}
    namespace = metadata.get("namespace")
    return f"{namespace}/{metadata.get('name')}" if namespace else str(metadata.get("name"))


# ---------------------------------------------------------------------------------------------
# Structural steps: unknown fields, null pruning, defaulting
# ---------------------------------------------------------------------------------------------


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _unknown_fields(value: Any, schema: Schema, path: str) -> Iterator[str]:
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(value, dict) and schema.get("type") == "object":
        properties: Schema = schema.get("properties", {})
        additional = schema.get("additionalProperties")
        for key, child in value.items():
            if path == "" and key == "metadata":
                continue  # metadata is the API server's own schema
            if key in properties:
                yield from _unknown_fields(child, properties[key], _join(path, key))
            elif isinstance(additional, dict):
                yield from _unknown_fields(child, additional, _join(path, key))
            elif not properties and additional is None:
                continue  # a bare `type: object` (top-level metadata)
            else:
                yield _join(path, key)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            yield from _unknown_fields(item, schema["items"], _join(path, index))


def _prune_nulls(value: Any) -> None:
    # Fields that are not nullable lose their null before defaulting, as in the API server.
    if isinstance(value, dict):
        for key in [k for k, v in value.items() if v is None]:
            del value[key]
        for child in value.values():
            _prune_nulls(child)
    elif isinstance(value, list):
        for item in value:
            _prune_nulls(item)


def apply_defaults(value: Any, schema: Schema) -> None:
    """Fill in schema defaults in place, recursing into defaulted objects as the API server does."""
    if isinstance(value, dict) and schema.get("type") == "object":
        properties: Schema = schema.get("properties", {})
        for key, child_schema in properties.items():
            if key not in value and "default" in child_schema:
                value[key] = copy.deepcopy(child_schema["default"])
        for key, child in value.items():
            if key in properties:
                apply_defaults(child, properties[key])
            elif isinstance(schema.get("additionalProperties"), dict):
                apply_defaults(child, schema["additionalProperties"])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            apply_defaults(item, schema["items"])


def _metadata_errors(body: Mapping[str, Any]) -> list[FieldError]:
    metadata = body.get("metadata")
    if not isinstance(metadata, dict) or not (metadata.get("name") or metadata.get("generateName")):
        return [FieldError("metadata.name", "Required value", "name or generateName is required")]
    return []


# ---------------------------------------------------------------------------------------------
# Schema validation with the API server's wording
# ---------------------------------------------------------------------------------------------


def _plain_schema(schema: Any) -> Any:
    """The schema without Kubernetes extensions, for a draft-4 JSON Schema validator."""
    if isinstance(schema, dict):
        return {k: _plain_schema(v) for k, v in schema.items() if not k.startswith("x-kubernetes-")}
    if isinstance(schema, list):
        return [_plain_schema(v) for v in schema]
    return schema


@functools.cache
def _validator(kind: str) -> jsonschema.Draft4Validator:
    return jsonschema.Draft4Validator(_plain_schema(crd_schema(kind)))


def _go_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _shown(value: Any) -> str:
    """A value as the API server shows it in `Invalid value: ...`."""
    if isinstance(value, dict | list):
        return f'"{_go_type(value)}"'
    return json.dumps(value)


def schema_errors(body: Mapping[str, Any], schema: Schema) -> list[FieldError]:
    """Type, enum, bound, length, pattern and required errors, API-server style."""
    validator = _validator(str(body["kind"])) if schema is crd_schema(str(body["kind"])) else None
    validator = validator or jsonschema.Draft4Validator(_plain_schema(schema))
    errors: list[FieldError] = []
    for error in sorted(validator.iter_errors(body), key=lambda e: list(map(str, e.absolute_path))):
        path = ""
        for key in error.absolute_path:
            path = _join(path, key)
        errors.extend(_translate(error, path))
    return list(dict.fromkeys(errors))


def _translate(error: jsonschema.ValidationError, path: str) -> list[FieldError]:
    value: Any = error.instance
    limit: Any = error.validator_value
    rule = error.validator
    sub: Schema = error.schema if isinstance(error.schema, dict) else {}
    if rule == "required":
        missing = [name for name in limit if name not in value]
        return [FieldError(_join(path, name), "Required value") for name in missing]
    if rule == "type":
        detail = f'"{_go_type(value)}": {path} in body must be of type {limit}: "{_go_type(value)}"'
        if isinstance(value, bool) and limit == "string":
            detail += " (YAML reads unquoted yes/no/on/off/true/false as booleans: quote the value)"
        return [FieldError(path, "Invalid value", detail)]
    if rule == "enum":
        supported = ", ".join(json.dumps(v) for v in limit)
        return [FieldError(path, "Unsupported value", f"{_shown(value)}: supported values: {supported}")]
    if rule in {"minimum", "maximum"}:
        exclusive = sub.get("exclusiveMinimum" if rule == "minimum" else "exclusiveMaximum", False)
        relation = "greater than" if rule == "minimum" else "less than"
        bound = relation if exclusive else f"{relation} or equal to"
        detail = f"{_shown(value)}: {path} in body should be {bound} {limit}"
        return [FieldError(path, "Invalid value", detail)]
    if rule == "maxItems":
        return [FieldError(path, "Too many", f"{len(value)}: must have at most {limit} items")]
    if rule == "minItems":
        detail = f"{len(value)}: {path} in body should have at least {limit} items"
        return [FieldError(path, "Invalid value", detail)]
    if rule == "maxLength":
        return [FieldError(path, "Too long", f"may not be more than {limit} bytes")]
    if rule == "minLength":
        detail = f"{_shown(value)}: {path} in body should be at least {limit} chars long"
        return [FieldError(path, "Invalid value", detail)]
    if rule == "pattern":
        detail = f"{_shown(value)}: {path} in body should match '{limit}'"
        return [FieldError(path, "Invalid value", detail)]
    return [FieldError(path, "Invalid value", f"{_shown(value)}: {error.message}")]


# ---------------------------------------------------------------------------------------------
# CEL rules (x-kubernetes-validations), evaluated exactly as written in the CRD
# ---------------------------------------------------------------------------------------------

_CEL = celpy.Environment()


@functools.cache
def _program(rule: str) -> celpy.Runner:
    return _CEL.program(_CEL.compile(rule))


def _with_value(value: Any, message: str) -> str:
    # The API server quotes a scalar the rule failed on, and leaves objects and lists out.
    return message if isinstance(value, dict | list) else f"{_shown(value)}: {message}"


def cel_rules(schema: Schema) -> Iterator[Schema]:
    """Every x-kubernetes-validations entry in a schema tree."""
    yield from schema.get("x-kubernetes-validations", [])
    for child in schema.get("properties", {}).values():
        yield from cel_rules(child)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from cel_rules(schema[key])


def evaluate_rule(rule: str, value: Any) -> bool | str:
    """True when the rule holds, False when it fails, an error text when it cannot be evaluated."""
    try:
        result = _program(rule).evaluate({"self": json_to_cel(value)})
    except CELEvalError as exc:
        return f"{exc.args[0] if exc.args else exc!s} evaluating rule: {rule}"
    if isinstance(result, BoolType):
        return bool(result)
    return f"{result!s} evaluating rule: {rule}"


def cel_errors(value: Any, schema: Schema, path: str = "") -> list[FieldError]:
    """Evaluate every CEL rule that applies to a value, depth first, as the API server does."""
    errors: list[FieldError] = []
    for entry in schema.get("x-kubernetes-validations", []):
        outcome = evaluate_rule(entry["rule"], value)
        if outcome is True:
            continue
        where = path + entry.get("fieldPath", "") if entry.get("fieldPath") else path
        if outcome is False:
            reason = entry.get("reason", "FieldValueInvalid")
            if reason == "FieldValueRequired":
                errors.append(FieldError(where, "Required value", entry["message"]))
            elif reason == "FieldValueForbidden":
                errors.append(FieldError(where, "Forbidden", entry["message"]))
            else:
                errors.append(FieldError(where, "Invalid value", _with_value(value, entry["message"])))
        else:
            errors.append(FieldError(where, "Invalid value", _with_value(value, outcome)))
    if isinstance(value, dict):
        properties: Schema = schema.get("properties", {})
        additional = schema.get("additionalProperties")
        for key, child in value.items():
            if key in properties:
                errors += cel_errors(child, properties[key], _join(path, key))
            elif isinstance(additional, dict):
                errors += cel_errors(child, additional, _join(path, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            errors += cel_errors(item, schema["items"], _join(path, index))
    return errors


def _pydantic_error(error: Mapping[str, Any]) -> FieldError:
    path = ""
    for key in error["loc"]:
        path = _join(path, key)
    return FieldError(path, "Invalid value", str(error["msg"]))
