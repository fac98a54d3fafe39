"""The commands of docs/setup.md marked ``<!-- docs-test -->`` run as written, against a real ``scimflow emulate``;
the README's Reliability figures are the ones in tests/reliability/figures.json.

A marked block is a fenced ``bash`` block right after the comment. Each line is one command run by bash
from the repository root; ``uv run scimflow`` / ``uv run python`` become this interpreter, the docs'
folder ``/tmp/scimflow-try`` becomes a temporary one. A line ending in ``&`` starts a background
process (stopped at the end); a trailing ``# exit N`` is the documented exit code (0 otherwise).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.reliability.readme import FIGURE_KEYS, README, SECTION_PATH, readme_section, render_section

ROOT = Path(__file__).resolve().parents[1]
SETUP = ROOT / "docs" / "setup.md"
DOCS_FOLDER = "/tmp/scimflow-try"
MARKER = "<!-- docs-test -->"
COMMAND_TIMEOUT = 240.0
_EXIT = re.compile(r"#\s*exit\s+(\d+)\s*$")
_NOT_BUILT = re.compile(r"not built yet|No module named '((?:scimflow\.commands|flows|tasks)\.[\w.]+)'")


@dataclass(frozen=True)
class Command:
    """One documented command line, its documented exit code, and whether it runs in the background."""

    line: str
    expected: int
    background: bool


def docs_blocks(text: str) -> list[list[str]]:
    """The lines of every fenced ``bash`` block that follows a ``<!-- docs-test -->`` comment."""
    blocks: list[list[str]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == MARKER:
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            if j >= len(lines) or lines[j].strip() != "```bash":
                msg = f"line {i + 1}: {MARKER} must be followed by a ```bash block"
                raise ValueError(msg)
            body: list[str] = []
            j += 1
            while j < len(lines) and lines[j].strip() != "```":
                body.append(lines[j])
                j += 1
            blocks.append(body)
            i = j
        i += 1
    return blocks


def parse_commands(block: list[str]) -> list[Command]:
    """Commands of a block: comment-only and blank lines skipped, ``# exit N`` read, ``&`` noted."""
    out = []
    for raw in block:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _EXIT.search(line)
        expected = int(m.group(1)) if m else 0
        if m:
            line = line[: m.start()].rstrip()
        background = line.endswith("&")
        out.append(Command(line.rstrip("&").rstrip() if background else line, expected, background))
    return out


def localize(line: str, folder: Path) -> str:
    """The command as this test runs it: this interpreter instead of ``uv run``, a private folder."""
    py = shlex.quote(sys.executable)
    line = re.sub(r"\buv run scimflow\b", f"{py} -m scimflow", line)
    line = re.sub(r"\buv run python\b", py, line)
    return line.replace(DOCS_FOLDER, str(folder))


def _not_built(output: str) -> str | None:
    m = _NOT_BUILT.search(output)
    if m is None:
        return None
    return f"a CLI verb is not built yet ({m.group(1) or m.group(0)})"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "NO_COLOR": "1", "COLUMNS": "200"})
    return env


class _Background:
    """Background processes of a block, each in its own session so it can be stopped by its id."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.procs: list[tuple[str, subprocess.Popen[bytes], Path]] = []

    def start(self, line: str) -> None:
        log = self.folder / f"background-{len(self.procs)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                ["bash", "-c", f"exec {line}"],
                cwd=ROOT,
                env=_env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append((line, proc, log))

    def dead(self) -> tuple[str, int, str] | None:
        """A background process that exited: its line, code and output."""
        for line, proc, log in self.procs:
            code = proc.poll()
            if code is not None:
                return line, code, log.read_text(errors="replace")
        return None

    def stop(self) -> None:
        for _, proc, _ in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=5)


def _run(line: str, background: _Background) -> tuple[int, str]:
    """Run one foreground command; stop early if a background process it may wait for has died."""
    proc = subprocess.Popen(
        ["bash", "-c", line], cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + COMMAND_TIMEOUT
    while proc.poll() is None:
        died = background.dead()
        if died is not None or time.monotonic() > deadline:
            proc.kill()
            proc.communicate()
            if died is not None:
                reason = _not_built(died[2])
                if reason:
                    pytest.skip(reason)
                pytest.fail(f"background command exited {died[1]}: {died[0]}\n{died[2][-3000:]}")
            pytest.fail(f"timed out after {COMMAND_TIMEOUT:.0f} s: {line}")
        time.sleep(0.05)
    out, _ = proc.communicate()
    return proc.returncode, out.decode(errors="replace")


BLOCKS = docs_blocks(SETUP.read_text(encoding="utf-8"))


def test_readme_figures_are_the_figures_file() -> None:
    """The README's Reliability section (and README-section.md) is rendered from figures.json, unedited."""
    figures = json.loads((ROOT / "tests" / "reliability" / "figures.json").read_text())
    assert set(FIGURE_KEYS) <= set(figures), f"figures.json lacks {sorted(set(FIGURE_KEYS) - set(figures))}"
    expected = render_section(figures)
    assert readme_section(README.read_text()) == expected, "README.md's Reliability section: run `make figures`"
    assert SECTION_PATH.read_text() == expected, "tests/reliability/README-section.md: run `make figures`"


def test_setup_has_a_docs_test_block() -> None:
    """setup.md marks its emulator walkthrough for testing, and the plan there is documented to exit 2."""
    assert BLOCKS, f"no {MARKER} block in {SETUP}"
    commands = [c for block in BLOCKS for c in parse_commands(block)]
    assert any(c.background and "scimflow emulate" in c.line for c in commands)
    assert any("scimflow plan" in c.line and c.expected == 2 for c in commands)


def test_parse_commands_reads_exit_codes_and_background() -> None:
    """Trailing ``# exit N`` sets the expected code, ``&`` marks background, comments and blanks are skipped."""
    block = ["# a comment", "", "serve --x &", "plan --out y   # exit 2", "wait  # the config appears"]
    assert parse_commands(block) == [
        Command("serve --x", 0, background=True),
        Command("plan --out y", 2, background=False),
        Command("wait  # the config appears", 0, background=False),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("block", BLOCKS, ids=[f"setup.md-block-{i + 1}" for i in range(len(BLOCKS))])
def test_docs_block_runs_as_documented(block: list[str], tmp_path: Path) -> None:
    """Every command of the block exits with its documented code against a live ``scimflow emulate``."""
    folder = tmp_path / "try"
    background = _Background(tmp_path)
    try:
        for cmd in parse_commands(block):
            line = localize(cmd.line, folder)
            if cmd.background:
                background.start(line)
                continue
            code, output = _run(line, background)
            if code != cmd.expected:
                reason = _not_built(output)
                if reason:
                    pytest.skip(reason)
                pytest.fail(f"`{cmd.line}` exited {code}, documented {cmd.expected}:\n{output[-4000:]}")
    finally:
        background.stop()
