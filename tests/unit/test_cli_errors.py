"""The command line fails politely: every expected failure is one line naming the problem and a non-zero
exit, never a traceback; `validate` lists every error at once; every option has help text.

The servers that "do not answer" are loopback ports nothing listens on (refused at once).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edgetenant.cli import SUBCOMMANDS, main

REPO = Path(__file__).resolve().parents[2]
CLOSED = "http://127.0.0.1:1"  # port 1: nothing listens, so the connection is refused at once

TUNE = ["tune", "--triton", CLOSED, "--prometheus", CLOSED, "--model", "m"]

UNREACHABLE_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
"""

BAD_TENANT = """\
apiVersion: edgetenant.io/v1alpha1
kind: InferenceTenant
metadata: {name: bad, namespace: x}
spec:
  modle: {}
  model: {format: onnx, uri: "ftp://x", maxBatchSize: -3}
  slo: {latencyP95Ms: -1}
  concurrency: {mode: Auto, min: 5, max: 2}
"""


def run_cli(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exit_:  # argparse's own refusals
        return exit_.code if isinstance(exit_.code, int) else 1


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "not-a-kubeconfig").write_text("just words\n")
    (tmp_path / "unreachable").write_text(UNREACHABLE_KUBECONFIG)
    (tmp_path / "a-file").write_text("")
    return {name: str(tmp_path / name) for name in ("not-a-kubeconfig", "unreachable", "a-file")}


# (arguments, a phrase the one line must hold); {name} is a file from the fixture above.
ERROR_TABLE: list[tuple[list[str], str]] = [
    (["validate", "-f", "/nonexistent/dir"], "no such file or directory"),
    (["plan", "--time-limit", "-1", "-f", "x"], "--time-limit: must be more than 0"),
    (["plan", "--kubeconfig", "/nonexistent/kubeconfig"], "No configuration found"),
    (["plan", "--kubeconfig", "{unreachable}"], "Connection refused"),
    (["load", "--url", CLOSED, "--model", "m", "--concurrency", "1", "--requests", "1"], "Cannot connect"),
    (["load", "--url", CLOSED, "--model", "m", "--concurrency", "0"], "--concurrency: must be between 1"),
    (["load", "--url", CLOSED, "--model", "m", "--rate", "nan"], "--rate: must be between"),
    (["profile", "--model-file", "/nonexistent/m.onnx"], "/nonexistent/m.onnx: no such file"),
    (["profile", "--triton", CLOSED, "--model", "m"], "unreachable"),
    (["profile", "--zoo", "resnet18", "--max-instances", "0"], "--max-instances: must be between 1"),
    (["tune", "--triton", CLOSED, "--prometheus", CLOSED, "--model", "m"], "unreachable"),
    (["tune", "--triton", CLOSED, "--prometheus", CLOSED, "--model", "m", "--interval", "-5"], "--interval"),
    (
        ["tune", "--triton", CLOSED, "--prometheus", CLOSED, "--model", "m", "--min", "x"],
        "not a whole number",
    ),
    (["run", "--kubeconfig", "/nonexistent/kubeconfig"], "no such file or directory"),
    (["run", "--kubeconfig", "{not-a-kubeconfig}"], "not a kubeconfig"),
    (["zoo", "build", "--out", "{a-file}/sub", "--models", "mobilenet_v1"], "not a directory"),
    (["zoo", "build", "--models", "nope"], "invalid choice: 'nope'"),
    (["nope"], "unknown command 'nope'"),
]


@pytest.mark.parametrize(
    ("argv", "phrase"), ERROR_TABLE, ids=[" ".join(a[:1] + a[-2:]) for a, _ in ERROR_TABLE]
)
def test_an_expected_failure_is_one_line_and_a_non_zero_exit(
    argv: list[str], phrase: str, files: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_cli([arg.format(**files) for arg in argv])
    err = capsys.readouterr().err
    assert code != 0
    assert "Traceback" not in err
    # argparse prints its usage above the line, `validate` its count below; nothing else is printed.
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(("usage", " "))]
    assert any(phrase in line for line in lines), err
    assert len(lines) <= 2, err


def test_validate_reports_every_error_in_one_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(BAD_TENANT)
    assert main(["validate", "-f", str(manifest), "-o", "none"]) == 1
    err = capsys.readouterr().err
    # One of each stage the API server would report one at a time: unknown field, schema, CEL rules.
    for phrase in (
        'unknown field "spec.modle"',
        "spec.model.maxBatchSize: Invalid value: -3",
        "spec.slo.latencyP95Ms: Invalid value: -1",
        "model.uri must start with",
        "concurrency.min must be less than or equal to concurrency.max",
    ):
        assert phrase in err, err
    assert "5 problem(s)" in err or "6 problem(s)" in err, err


def test_the_shipped_manifests_still_validate(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "-f", str(REPO / "manifests" / "samples"), "-o", "none"]) == 0
    assert main(["validate", "-f", str(REPO / "manifests" / "acceleratorclasses"), "-o", "none"]) == 0


class _Parsed(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser


def _parsers_of(command: str, monkeypatch: pytest.MonkeyPatch) -> list[argparse.ArgumentParser]:
    """The parser a command builds, and its subcommands' parsers (taken as it starts to parse)."""

    def capture(self: argparse.ArgumentParser, *_: Any, **__: Any) -> Any:
        raise _Parsed(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    with pytest.raises(_Parsed) as caught:
        main([command])
    monkeypatch.undo()
    parsers = [caught.value.parser]
    for action in caught.value.parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            parsers += list(action.choices.values())
    return parsers


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_every_option_has_help_text(command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = [
        f"{parser.prog} {'/'.join(action.option_strings) or action.dest}"
        for parser in _parsers_of(command, monkeypatch)
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction | argparse._SubParsersAction)
        and action.help in (None, "", argparse.SUPPRESS)
    ]
    assert not missing, f"options without help text: {missing}"


def test_version_and_run_help_need_no_operator_imports() -> None:
    """`edgetenant run --help` answers without importing kopf or the Kubernetes client (so it is fast;
    the time itself is measured in BENCHMARKS.md, not asserted)."""
    probe = (
        "import sys\n"
        "from edgetenant.cli import main\n"
        "try:\n    main(['run', '--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = ('kopf', 'kubernetes', 'aiohttp', 'edgetenant.handlers')\n"
        "heavy = sorted(m for m in heavy if m in sys.modules)\n"
        "print('heavy:' + ','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO / "operator"
    )
    assert result.stdout.strip().splitlines()[-1] == "heavy:", result.stdout
    assert "--namespace" in result.stdout and "--standalone" in result.stdout
