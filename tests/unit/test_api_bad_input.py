"""Every wrong manifest in tests/bad_manifests.py is refused, with the words a person needs.

Checked offline against the generated CRD schemas and the CEL rules in them (the cluster tests
send the same table to a real API server).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from edgetenant.api.cli import main as validate_main
from edgetenant.api.validation import validate_manifest


def _load_table() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "bad_manifests.py"
    spec = importlib.util.spec_from_file_location("bad_manifests", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bad_manifests", module)  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


TABLE = _load_table()


def test_table_is_large_and_ids_are_unique() -> None:
    ids = [case.id for case in TABLE.CASES]
    assert len(ids) >= 20
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("manifest", TABLE.GOOD, ids=lambda m: m["kind"])
def test_the_base_manifests_are_valid(manifest: dict[str, object]) -> None:
    # Each bad case breaks exactly one thing in one of these; they must be fine on their own.
    result = validate_manifest(manifest)
    assert result.ok, [str(e) for e in result.errors]


@pytest.mark.parametrize("case", TABLE.CASES, ids=lambda c: c.id)
def test_bad_manifest_is_refused_with_its_message(case: Any) -> None:
    result = validate_manifest(case.manifest)
    shown = "\n".join(str(error) for error in result.errors)
    assert not result.ok
    for expected in case.expect:
        assert expected in shown


@pytest.mark.parametrize(
    "case",
    [c for c in TABLE.CASES if c.id in {"unknown-format", "concurrency-min-above-max"}],
    ids=lambda c: c.id,
)
def test_validate_command_names_file_object_and_field(
    case: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tenant.yaml"
    path.write_text(yaml.safe_dump(case.manifest))
    assert validate_main(["-f", str(path)]) == 1
    err = capsys.readouterr().err
    name = case.manifest["metadata"]["name"]
    assert f"{path}: InferenceTenant bad-input/{name}: spec." in err
    for expected in case.expect:
        assert expected in err
