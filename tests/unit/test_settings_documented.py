"""Every operator setting is documented in docs/operations.md, with its real default."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from edgetenant.errors import ConfigError
from edgetenant.settings import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def documented() -> dict[str, str]:
    settings = DOC.read_text().split("### Other `EDGETENANT_*` variables")[0]  # the operator's table only
    rows = re.findall(r"^\| `(EDGETENANT_[A-Z0-9_]+)` \| (.*?) \|", settings, re.M)
    return dict(rows)


def test_every_setting_is_in_the_table_with_its_default() -> None:
    table = documented()
    for f in fields(Settings):
        name = f"EDGETENANT_{f.name.upper()}"
        assert name in table, f"{name} is not documented in docs/operations.md"
        default = getattr(Settings(), f.name)
        shown = table[name].strip("`")
        assert shown == str(default) or (default == "" and shown == "(empty)"), f"{name}: doc says {shown}"
    assert set(table) == {f"EDGETENANT_{f.name.upper()}" for f in fields(Settings)}, "documented but unknown"


# Names that look like variables but are not (a Python constant; the prefix of a Makefile pattern).
NOT_VARIABLES = {"EDGETENANT_PARAMETERS", "EDGETENANT_LAB_"}
SOURCES = ("operator", "hack", "tests", "images", "Makefile", ".ci")


def test_every_other_edgetenant_variable_is_documented_too() -> None:
    repo = DOC.parents[1]
    used: set[str] = set()
    for source in SOURCES:
        root = repo / source
        for path in [root] if root.is_file() else root.rglob("*"):
            if path.is_file() and path.suffix in {"", ".py", ".sh", ".toml", ".yaml"}:
                used |= set(re.findall(r"EDGETENANT_[A-Z0-9_]+", path.read_text(errors="replace")))
    text = DOC.read_text()
    missing = sorted(v for v in used - NOT_VARIABLES if f"`{v}`" not in text)
    assert not missing, f"not in docs/operations.md: {missing}"


def test_a_bad_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="EDGETENANT_RESYNC_S"):
        Settings.from_env({"EDGETENANT_RESYNC_S": "soon"})
    with pytest.raises(ConfigError, match="RENEW_DEADLINE"):
        Settings.from_env({"EDGETENANT_RENEW_DEADLINE_S": "20"})
    assert Settings.from_env({"EDGETENANT_STANDALONE": "true"}).standalone
