"""The command line's basics: usage errors exit 1, ``--version``, and the sync options defined once."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

from scimflow.cli import ScimflowGroup, app
from scimflow.config import ConfigError
from scimflow.sync_options import SYNC_FLAGS, add_sync_arguments
from scimflow.sync_params import SyncParams, params_from_namespace, sync_argv

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _verbs() -> list[list[str]]:
    """Every command path of the CLI (``["plan"]``, ``["rules", "check"]``, ...)."""
    out: list[list[str]] = []

    def walk(cmd: object, path: list[str]) -> None:
        subs = getattr(cmd, "commands", None)
        if subs is None:
            out.append(path)
            return
        for name, sub in subs.items():
            walk(sub, [*path, name])

    walk(get_command(app), [])
    return out


def test_every_verb_is_found():
    """The walk over the command tree finds the contract's verbs, nested ones included."""
    verbs = {" ".join(v) for v in _verbs()}
    assert {"plan", "sync", "explain", "doctor", "demo", "emulate", "rules check", "rules test"} <= verbs


@pytest.mark.parametrize("verb", _verbs(), ids=" ".join)
def test_unknown_option_exits_1(verb: list[str]):
    """An unknown option is a usage error on every verb: exit 1 (2 means "rows to look at"), naming it."""
    result = runner.invoke(app, [*verb, "--no-such-option"])
    assert result.exit_code == 1, result.output
    assert "No such option: --no-such-option" in result.output


def test_misspelt_option_on_plan_exits_1_in_a_real_process():
    """`scimflow plan --confg x` run as a process exits 1 and suggests --config."""
    out = subprocess.run(
        [sys.executable, "-m", "scimflow", "plan", "--confg", "x"], capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 1
    assert "--config" in out.stderr
    assert "Traceback" not in out.stderr


def test_unknown_verb_and_bad_mode_exit_1():
    """An unknown verb and a --mode outside the choices are usage errors too."""
    assert runner.invoke(app, ["plna"]).exit_code == 1
    result = runner.invoke(app, ["sync", "--mode", "sometimes"])
    assert result.exit_code == 1
    assert "preview" in result.output and "auto" in result.output


def test_out_of_range_sync_value_names_the_flag():
    """A value SyncParams refuses (--timeout 0) exits 1 naming the flag, before anything starts."""
    result = runner.invoke(app, ["sync", "--timeout", "0"])
    assert result.exit_code == 1
    assert "--timeout" in result.output


def test_version():
    """`scimflow --version` prints the installed version and exits 0."""
    from importlib.metadata import version

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"scimflow {version('scimflow')}"


def test_scimflow_error_is_a_message_and_exit_1():
    """A ScimflowError escaping a verb is printed as `error: ...` and exits 1, without a traceback."""
    probe = typer.Typer(cls=ScimflowGroup)

    @probe.command()
    def broken() -> None:
        raise ConfigError("scimflow.yaml: key 'tenant' is missing")

    @probe.command()
    def other() -> None:
        pass

    result = runner.invoke(probe, ["broken"])
    assert result.exit_code == 1
    assert "error: scimflow.yaml: key 'tenant' is missing" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_sync_help_lists_every_sync_param_without_bool_markers():
    """`scimflow sync --help` shows one flag per SyncParams field, and flags carry no `<bool>` type."""
    result = runner.invoke(app, ["sync", "--help"])
    assert result.exit_code == 0
    for f in SYNC_FLAGS:
        assert f.flag in result.output
    assert {f.field for f in SYNC_FLAGS} == set(SyncParams.model_fields)
    for flag in ("--full", "--no-wait-for-held", "--approve"):
        line = next(ln for ln in result.output.splitlines() if flag in ln)
        assert "<" not in line.split(flag, 1)[1].split("  ")[0], line
    top = runner.invoke(app, ["--help"])
    assert "<bool>" not in top.output and "<bool>" not in result.output


def test_flow_runner_parser_has_every_sync_flag():
    """`python -m flows.run --help` lists the same flags, and an unknown option exits 1 there too."""
    out = subprocess.run([sys.executable, "-m", "flows.run", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0
    for f in SYNC_FLAGS:
        assert f.flag in out.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "flows.run", "--no-such-option"], capture_output=True, text=True, cwd=ROOT
    )
    assert bad.returncode == 1
    assert "--no-such-option" in bad.stderr


@pytest.mark.parametrize(
    "params",
    [
        SyncParams(),
        SyncParams(config="/etc/scimflow.yaml", mode="auto", wait_for_held=False, full=True, poll_interval=5),
        SyncParams(config="/x.yaml", rules="/r.yaml", user="ada@example.com", cli_approved=True, approval_timeout=9),
        SyncParams(config="/x.yaml", mode="preview"),
    ],
)
def test_sync_argv_round_trips_through_the_derived_parser(params: SyncParams):
    """The command line `scimflow sync` hands to the flow process parses back into the same SyncParams."""
    parser = argparse.ArgumentParser()
    add_sync_arguments(parser)
    back = params_from_namespace(parser.parse_args(sync_argv(params)), resolve=False)
    expected = params.model_copy(update={"config": str(Path(params.config).resolve())})
    assert back == expected


def test_negated_flag_turns_the_field_off():
    """`--no-wait-for-held` sets wait_for_held false; without it the field keeps its default (true)."""
    parser = argparse.ArgumentParser()
    add_sync_arguments(parser)
    assert params_from_namespace(parser.parse_args([])).wait_for_held is True
    assert params_from_namespace(parser.parse_args(["--no-wait-for-held"])).wait_for_held is False


def test_sync_params_form_follows_the_options():
    """The flow's form (SyncParams' JSON Schema) carries each option's description, default and range."""
    props = SyncParams.model_json_schema()["properties"]
    assert list(props) == [f.field for f in SYNC_FLAGS]
    for f in SYNC_FLAGS:
        assert props[f.field]["description"] == f.description
        assert props[f.field]["default"] == f.default
        assert props[f.field].get("minimum") == f.ge
        assert props[f.field].get("maximum") == f.le
    assert props["mode"]["enum"] == ["preview", "approve", "auto"]


def test_cli_import_leaves_pydantic_out():
    """Importing the CLI (what `scimflow --help` does) does not import pydantic: the sync options are stdlib."""
    code = "import sys, scimflow.cli; print('pydantic' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"
