"""The README's "Reliability" section, rendered from figures.json (the numbers are the suite's, not typed).

A test run changes no tracked file: figures.json, README-section.md, the README's section (and the docs'
screenshots, tests/browser) are written only when :data:`WRITE_ENV` is ``1``, which ``make figures`` sets;
tests/test_docs.py checks that the README shows what figures.json holds.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["FIGURE_KEYS", "WRITE_ENV", "readme_section", "render_section", "write_section", "writing_figures"]

#: Set to ``1`` (``make figures``) to let a full run write the figures and the docs' screenshots.
WRITE_ENV = "SCIMFLOW_WRITE_FIGURES"


def writing_figures() -> bool:
    """Whether this run writes the tracked figures and screenshots (``SCIMFLOW_WRITE_FIGURES=1``)."""
    return os.environ.get(WRITE_ENV) == "1"


#: The figures the suite counts (figures.json; the README section shows them).
FIGURE_KEYS: tuple[str, ...] = (
    "scenarios",
    "faults_injected",
    "crashes_survived",
    "changes_checked",
    "changes_lost",
    "duplicates",
    "bad_inputs_tried",
    "bad_inputs_refused_or_quarantined",
    "writes_from_bad_input",
    "hostile_rule_files",
    "hostile_rule_files_refused",
    "forged_approvals_tried",
    "forged_approvals_refused",
    "secrets_tracked",
    "texts_scanned",
    "leaks",
)

SECTION_PATH = Path(__file__).resolve().parent / "README-section.md"

_TEMPLATE = """\
## Reliability

An identity sync that misfires retires good people or leaks credentials. `tests/reliability/` (part of
`make test`) and `make soak` prove, end to end against the emulators over real sockets, that scimflow
survives faults, refuses bad input, loses nothing and leaks nothing. Every figure below is counted by the
suite and written by `make figures` (`tests/reliability/figures.json`, with the time of the run), which
copies it here between the markers; none is typed by hand, and a plain `make test` changes no file.

| what | figure |
|---|---|
| fault scenarios run (429 storms, 5xx bursts, timeouts, dropped and reset connections, truncated pages, errors and lost pages mid-paging, token and ticket expiry) | {scenarios} |
| faults injected (socket-level proxy faults + emulator knobs) | {faults_injected} |
| runs killed with SIGKILL mid-apply and converged on rerun | {crashes_survived} |
| planned changes checked against the emulator snapshot after convergence | {changes_checked} |
| changes lost | {changes_lost} |
| duplicate SuperOffice users | {duplicates} |
| bad inputs tried (`tests/reliability/corpus/`) | {bad_inputs_tried} |
| bad inputs refused with a clear error or quarantined | {bad_inputs_refused_or_quarantined} |
| writes caused by bad input | {writes_from_bad_input} |
| hostile rule files tried (long identifiers, OR chains, nested growth, bad regexes, dotted tricks, alias bombs) | {hostile_rule_files} |
| hostile rule files refused by `rules check` (exit 1, under a second each) | {hostile_rule_files_refused} |
| forged approvals tried (a foreign or missing plan hash, no approver, unknown classes or users, a held class cleared without `release_held`) | {forged_approvals_tried} |
| forged approvals refused (nothing applied) | {forged_approvals_refused} |
| secrets and issued tokens tracked (searched for in logs, tracebacks, plan files, state DB, Prefect artifacts and logs, process output) | {secrets_tracked} |
| secrets leaked | {leaks} |

What each fault must lead to: **the plan a clean run makes, exactly** (`plan.jsonl` compared row by row),
or **a clean failure that names the request** with nothing applied. A fault never turns into "everyone
left": no retire row appears because of a fault, and a lost page that shrinks the extract is caught by the
`min_source_users` / `max_source_drop` guardrails (verdict `source_unhealthy`, nothing applied).

Crash safety: the apply is killed with SIGKILL after *k* SuperOffice writes (read from `/_emulator/stats`,
several *k*, with emulator latency so kills land mid-apply); each rerun converges with one SuperOffice
user per `UserName` and every planned change present in `/_emulator/snapshot`.

Security: every log line (DEBUG), exception, plan file, state database, child process output and Prefect
artifact and log is searched for the configured secrets (Entra client secret, SuperOffice app token and
system user token, private key material) and for every access token, JWT and ticket seen on the wire (the
test proxy records `Authorization` values). Untrusted certificates are refused with verification on by
default; the emulators listen on loopback only; the state database and plan files are created `0600`.
An approval given through the Prefect API applies only if it carries the hash of the plan it approves and
an approver's name, and names only real change classes and users of the plan; a class held over its
guardrail budget is released only by `release_held` (`tests/reliability/test_forged_approval.py`).

```bash
make soak                      # 5 minutes of random faults and kills; SOAK_SECONDS=60 make soak for a short one
# ends with: soak: scenarios N, faults injected N, crashes N, duplicates 0, lost 0  (non-zero exit otherwise)
```
"""


def render_section(figures: dict[str, Any]) -> str:
    """The section's markdown for ``figures`` (figures.json's content)."""
    values = {k: figures.get(k, 0) for k in (*FIGURE_KEYS, "written_at")}
    return _TEMPLATE.format(**values)


README = Path(__file__).resolve().parents[2] / "README.md"
START, END = "<!-- reliability:start -->", "<!-- reliability:end -->"


def readme_section(readme: str) -> str | None:
    """The README text between the markers (``None`` when the markers are missing)."""
    if START not in readme or END not in readme:
        return None
    return readme.split(START, 1)[1].split(END, 1)[0].removeprefix("\n")


def write_section(figures: dict[str, Any]) -> None:
    """Write README-section.md and replace the README's section between the markers (when present)."""
    text = render_section(figures)
    SECTION_PATH.write_text(text)
    if README.exists():
        readme = README.read_text()
        if START in readme and END in readme:
            head, rest = readme.split(START, 1)
            _, tail = rest.split(END, 1)
            new = f"{head}{START}\n{text}{END}{tail}"
            if new != readme:
                README.write_text(new)
