"""Server-side apply bodies are read as YAML: whatever a tenant writes must come back unchanged."""

from __future__ import annotations

import json

import pytest
import yaml

from edgetenant.adapters.kube import apply_body

STRINGS = [
    "http://models/😀.onnx",  # beyond the BMP: JSON writes a surrogate pair, which YAML refuses
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \U0010fffd \U0001fffe",
    "\\ud83d\\ude00 is text, not an escape",  # literal backslashes before what looks like one
    "\\\\😀\\",
    "nel\x85 ls\u2028 ps\u2029 bom\ufeff del\x7f nul\x00 tab\t nl\n cr\r",  # YAML line breaks, controls
    "日本語 é ü",
    "",
]


@pytest.mark.parametrize("text", STRINGS)
def test_yaml_reads_the_body_back_unchanged(text: str) -> None:
    obj = {"spec": {"args": [f"--uri={text}"], "labels": {"k": text}}}
    body = apply_body(obj)
    assert body.isascii()
    assert yaml.safe_load(body) == obj


def test_without_characters_beyond_the_bmp_it_is_plain_json() -> None:
    obj = {"a": ["é", "\\u", 1, None, True, 2.5]}
    assert apply_body(obj) == json.dumps(obj)
