"""The ``scimflow`` command line (typer). It never imports Prefect.

``sync`` and ``demo`` run the Prefect flow in a child process (``python -m flows.run``), so the core stays
Prefect-free and a crash of the flow process cannot take the CLI's own state with it. Each verb imports
its implementation lazily, so ``scimflow --help`` is fast.
"""

from __future__ import annotations

import inspect
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn

import typer
from typer._click.core import Context  # typer vendors click (0.2x) and re-exports neither of these
from typer._click.exceptions import UsageError
from typer.core import TyperGroup

from scimflow.errors import ScimflowError
from scimflow.sync_options import SYNC_FLAGS, SyncFlag  # standard library only: --help stays fast

__all__ = ["ScimflowGroup", "app", "main"]


class ScimflowGroup(TyperGroup):
    """Every verb's usage error exits 1 (click's 2 means "rows to look at" in the contract), and any
    :class:`ScimflowError` a verb lets escape is printed as ``error: ...`` with exit 1, never a traceback."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: Context | None = None, **extra: Any
    ) -> Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except UsageError as exc:
            exc.exit_code = 1
            raise

    def invoke(self, ctx: Context) -> Any:
        try:
            return super().invoke(ctx)
        except UsageError as exc:
            exc.exit_code = 1
            raise
        except ScimflowError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None


app = typer.Typer(
    name="scimflow",
    cls=ScimflowGroup,
    help="Keep SuperOffice CRM users in step with Microsoft Entra ID: plan, preview, approve, apply.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: typer's rich help prints a type (<bool>) after every flag
)
rules_app = typer.Typer(help="Check, test and compare rule sets.", no_args_is_help=True)
links_app = typer.Typer(
    help="Export or import the Entra-to-SuperOffice links of the state store.", no_args_is_help=True
)
scim_app = typer.Typer(help="Helpers for a SCIM 2.0 target (SuperOffice Online's gateway).", no_args_is_help=True)
app.add_typer(rules_app, name="rules")
app.add_typer(links_app, name="links")
app.add_typer(scim_app, name="scim")

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="The scimflow.yaml to use.")]
RulesOpt = Annotated[Path | None, typer.Option("--rules", "-r", help="A rule set overriding the config's `rules`.")]


def _exit(code: int) -> NoReturn:
    raise typer.Exit(code)


def _version() -> str:
    try:
        return version("scimflow")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"scimflow {_version()}")
        raise typer.Exit(0)


@app.callback()
def _root(
    show_version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Keep SuperOffice CRM users in step with Microsoft Entra ID: plan, preview, approve, apply."""


@app.command()
def demo(
    interactive: Annotated[
        bool, typer.Option("--interactive", help="Keep the Prefect UI up and wait for approval there.")
    ] = False,
    users: Annotated[int, typer.Option("--users", help="Size of the generated tenant.")] = 200,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the generated tenant.")] = 7,
    workdir: Annotated[Path, typer.Option("--workdir", help="Where the demo keeps its files.")] = Path(
        ".scimflow/demo"
    ),
    target: Annotated[
        Literal["superoffice", "scim"],
        typer.Option("--target", help="superoffice (the Web API emulator) or scim (a SCIM 2.0 emulator)."),
    ] = "superoffice",
    scim_dialect: Annotated[
        Literal["entra", "rfc"], typer.Option("--scim-dialect", help="With --target scim: entra or rfc.")
    ] = "entra",
) -> None:
    """Emulators with a generated tenant + the whole flow on a local Prefect, approved from the command line."""
    from scimflow.commands.demo_cmd import run_demo

    _exit(
        run_demo(
            interactive=interactive,
            users=users,
            seed=seed,
            workdir=workdir,
            target=target,
            scim_dialect=scim_dialect,
        )
    )


@app.command()
def emulate(
    write_config: Annotated[
        Path, typer.Option("--write-config", help="Where to write the config pointing at the emulators.")
    ],
    graph_data: Annotated[Path | None, typer.Option("--graph-data", help="Graph fixture (G.json).")] = None,
    superoffice_data: Annotated[
        Path | None, typer.Option("--superoffice-data", help="SuperOffice fixture (S.json).")
    ] = None,
    users: Annotated[
        int | None, typer.Option("--users", help="Generate a tenant of N users instead of reading files.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for --users.")] = 0,
    graph_port: Annotated[int | None, typer.Option("--graph-port")] = None,
    superoffice_port: Annotated[int | None, typer.Option("--superoffice-port")] = None,
    rules: RulesOpt = None,
    target: Annotated[
        str, typer.Option("--target", help="superoffice (Web API emulator) or scim (SCIM emulator instead).")
    ] = "superoffice",
    scim_data: Annotated[
        Path | None, typer.Option("--scim-data", help="SCIM fixture ({users, groups}); default: empty.")
    ] = None,
    scim_dialect: Annotated[
        str, typer.Option("--scim-dialect", help="entra (Entra-tolerant policy) or rfc (strict); the config's.")
    ] = "entra",
    scim_port: Annotated[int | None, typer.Option("--scim-port")] = None,
) -> None:
    """Serve both emulators on loopback over HTTPS until stopped, and write a config that points at them."""
    from scimflow.commands.emulate_cmd import run_emulate

    # run_emulate checks the combination of --users, --graph-data, --superoffice-data and --target.
    _exit(
        run_emulate(
            graph_data=graph_data,
            superoffice_data=superoffice_data,
            write_config=write_config,
            users=users,
            seed=seed,
            graph_port=graph_port,
            superoffice_port=superoffice_port,
            rules=rules,
            target=target,
            scim_data=scim_data,
            scim_dialect=scim_dialect,
            scim_port=scim_port,
        )
    )


@app.command()
def plan(
    config: ConfigOpt = Path("scimflow.yaml"),
    rules: RulesOpt = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder for the plan files.")] = None,
    full: Annotated[
        bool, typer.Option("--full", help="Read all Entra users even when a delta link is stored.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the plan rows (plan.jsonl) as one JSON array and nothing else.")
    ] = False,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            min=0,
            help="Users shown per action (and members per group change); the rest are counted. "
            "Default: 50 on a terminal, all when piped; 0: all.",
        ),
    ] = None,
) -> None:
    """Extract, validate and plan; write the plan files and print what will change. Exit 0 empty, 2 rows, 1 error.

    The diff goes to stdout (coloured on a terminal, plain when piped): one line per user grouped by action,
    + create with its values, ~ update with from -> to, - retire, reactivate, quarantine and conflict with
    their reasons, and a SCIM target's group changes. The counts, the guardrails' verdict, the plan hash
    and the folder go to stderr. Apply the saved plan later with `scimflow apply PLAN_DIR`.
    """
    from scimflow.commands.plan_live import run_plan

    _exit(run_plan(config=config, rules=rules, out=out, full=full, as_json=as_json, limit=limit))


@app.command()
def apply(
    plan_dir: Annotated[
        Path,
        typer.Argument(metavar="PLAN_DIR", help="The folder of a plan written by `scimflow plan` or a sync run."),
    ],
    approve: Annotated[
        str | None,
        typer.Option(
            "--approve",
            help="The plan hash you approve (summary.json's plan_hash, or its first 12+ hex characters). "
            "Without it a terminal asks for it; without a terminal nothing is applied (exit 1).",
        ),
    ] = None,
    config: ConfigOpt = Path("scimflow.yaml"),
    hold_actions: Annotated[
        list[str] | None,
        typer.Option("--hold-actions", help="An action class not to apply (e.g. retire); repeat for more."),
    ] = None,
    hold_users: Annotated[
        list[str] | None, typer.Option("--hold-users", help="A user (UPN) not to apply; repeat for more.")
    ] = None,
    comment: Annotated[str, typer.Option("--comment", help="Recorded with the approval in the journal.")] = "",
    limit: Annotated[
        int | None,
        typer.Option("--limit", min=0, help="Users shown per action in the prompt's diff (default 50; 0: all)."),
    ] = None,
    direct: Annotated[
        bool,
        typer.Option(
            "--direct",
            help="Apply in this process even when PREFECT_API_URL is set (no flow run; also when no server answers).",
        ),
    ] = False,
) -> None:
    """Apply a saved plan whose hash you confirm. Exit 0 all applied, 3 some not applied, 1 error or not approved.

    The apply is the guarded one of a sync run: rows whose user changed since the plan are held as drifted,
    every row is journalled and read back, the plan's matched pairs are linked; classes over their
    guardrail budget are held, and a plan whose source was judged unhealthy is refused. A plan.jsonl that
    no longer has its hash is refused with nothing applied. The approval is journalled as cli:<your OS user>.
    With PREFECT_API_URL set it runs as a Prefect flow run (apply-saved-plan, named <tenant>-apply-<time>, the
    hash confirmed here first), and exits 1 applying nothing if no server answers there; without
    PREFECT_API_URL, or with --direct, in this process.
    """
    from scimflow.commands.apply_cmd import run_apply

    _exit(
        run_apply(
            plan_dir,
            config=config,
            approve=approve,
            hold_actions=hold_actions or [],
            hold_users=hold_users or [],
            comment=comment,
            limit=limit,
            direct=direct,
        )
    )


@app.command()
def undo(
    ref: Annotated[
        str,
        typer.Argument(metavar="RUN_OR_PLAN_HASH", help="A run id or plan hash (or its first 8+ characters)."),
    ],
    config: ConfigOpt = Path("scimflow.yaml"),
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Folder for the inverse plan (default: under out_dir).")
    ] = None,
    plans: Annotated[
        list[Path] | None,
        typer.Option("--plans", help="A folder holding the plan files of the run to undo; repeat for more."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=0, help="Users shown per action on a terminal (default 50; 0: all).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the inverse plan's rows as one JSON array.")] = False,
) -> None:
    """Write the inverse plan of an applied run from the journal. Exit 0 nothing to undo, 2 rows, 1 error.

    Each change the journal records as applied is reversed (updates swapped, creates retired, retirements
    reactivated, reactivations retired), after a check against the target as it is now: a user changed
    since the run is held (a conflict row), never overwritten. Nothing is written to the target: apply the
    inverse plan with `scimflow apply DIR` (the hash confirmed) or `--approve HASH`.
    """
    from scimflow.commands.undo_cmd import run_undo

    _exit(run_undo(ref, config=config, out=out, plans=plans or [], limit=limit, as_json=as_json))


def _sync_option(f: SyncFlag) -> inspect.Parameter:
    """The typer option of one sync option (scimflow.sync_options.SYNC_FLAGS, which SyncParams follows)."""
    names = [f.flag, *([f.short] if f.short else [])]
    annotation: Any
    default: Any = f.default
    if f.kind is bool:
        annotation = Annotated[bool, typer.Option(*names, help=f.text)]
        default = False  # the flag's presence; a negated flag turns the field off
    elif f.choices:
        annotation = Annotated[Literal[f.choices], typer.Option(*names, help=f.text)]
    elif f.is_path:
        annotation = Annotated[Path | None if default is None else Path, typer.Option(*names, help=f.text)]
        default = None if default is None else Path(str(default))
    elif f.kind is int:
        annotation = Annotated[int, typer.Option(*names, help=f.text, min=f.ge, max=f.le)]
    else:
        annotation = Annotated[str | None if default is None else str, typer.Option(*names, help=f.text)]
    return inspect.Parameter(f.dest, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)


def sync(**values: Any) -> None:
    """The whole flow as a Prefect flow run. Exit 0 all applied, 3 some not applied, 1 error."""
    from pydantic import ValidationError

    from scimflow.commands.sync_cmd import run_sync
    from scimflow.sync_params import params_from_namespace

    for f in SYNC_FLAGS:
        if f.negated:
            values[f.dest] = not values[f.dest]
    try:
        params = params_from_namespace(values)
    except ValidationError as exc:
        flags = {f.field: f.flag for f in SYNC_FLAGS}
        problems = "; ".join(f"{flags.get(str(e['loc'][0]), e['loc'][0])}: {e['msg']}" for e in exc.errors())
        raise UsageError(problems) from None
    _exit(run_sync(params))


sync.__signature__ = inspect.Signature([_sync_option(f) for f in SYNC_FLAGS])  # type: ignore[attr-defined]
app.command("sync")(sync)


@app.command()
def explain(
    upn: Annotated[str, typer.Argument(help="The user's userPrincipalName.")],
    config: ConfigOpt = Path("scimflow.yaml"),
    rules: RulesOpt = None,
) -> None:
    """Why this user gets what it gets, rule by rule."""
    from scimflow.commands.plan_live import run_explain

    _exit(run_explain(config=config, rules=rules, upn=upn))


@app.command()
def doctor(config: ConfigOpt = Path("scimflow.yaml")) -> None:
    """Check connectivity, permissions, clock and certificates, and say how to fix what is wrong."""
    try:
        from scimflow.commands.doctor_cmd import run_doctor
    except ImportError:
        typer.echo("scimflow doctor is not built yet.", err=True)
        _exit(1)
    _exit(run_doctor(config=config))


@rules_app.command("check")
def rules_check(
    path: Annotated[Path, typer.Argument(help="The rule set (YAML).")],
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Resolve every named value against this tenant.")
    ] = None,
) -> None:
    """Load and compile a rule set; with --config also resolve its values against the tenant. Exit 0/1."""
    from scimflow.commands.plan_live import rules_check as check

    _exit(check(path=path, config=config))


@rules_app.command("test")
def rules_test(path: Annotated[Path, typer.Argument(help="The rule set (YAML) with a `tests:` block.")]) -> None:
    """Run the rule set's `tests:` block. Exit 0 when all pass, 1 otherwise."""
    from scimflow.commands.rules_cmd import test

    _exit(test(path))


@rules_app.command("diff")
def rules_diff(
    old: Annotated[Path, typer.Argument(help="The rule set in effect (YAML), e.g. a run's rules-last-applied.yaml.")],
    new: Annotated[Path, typer.Argument(help="The edited rule set (YAML).")],
    config: ConfigOpt = Path("scimflow.yaml"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the difference as one JSON document.")] = False,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit", min=0, help="Users shown per table. Default: 50 on a terminal, all when piped; 0: all."
        ),
    ] = None,
) -> None:
    """What changing the rules from OLD to NEW does to today's tenant: users whose resolved values change,
    who enters and leaves scope (created / retired). Nothing is written. Exit 0 no difference, 2 differences,
    1 error."""
    from scimflow.commands.rules_cmd import diff

    _exit(diff(old, new, config=config, as_json=as_json, limit=limit))


@links_app.command("export")
def links_export(config: ConfigOpt = Path("scimflow.yaml")) -> None:
    """Print the links as a JSON list of {"entra_id", "associate_id"}."""
    from scimflow.commands.links_cmd import export_links

    _exit(export_links(config))


@links_app.command("import")
def links_import(
    file: Annotated[Path, typer.Argument(help='A JSON list of {"entra_id", "associate_id"}.')],
    config: ConfigOpt = Path("scimflow.yaml"),
) -> None:
    """Import links (migrating from another provisioning tool, or restoring state)."""
    from scimflow.commands.links_cmd import import_links

    _exit(import_links(config, file))


@scim_app.command("img-rules")
def scim_img_rules(
    rules: Annotated[Path, typer.Option("--rules", "-r", help="The rule set (YAML).")],
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Take the group prefix from this config's scim block.")
    ] = None,
    prefix: Annotated[str | None, typer.Option("--prefix", help="The computed groups' prefix.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """The Identity Manager rules to enter once: one per computed group, every element value listed."""
    from scimflow.commands.scim_cmd import print_img_rules

    _exit(print_img_rules(rules, prefix=prefix, config=config, as_json=as_json))


from scimflow.commands import operator_cli as _ops  # noqa: E402 - the operator's verbs (journal, state, setup, config)

app.command("journal")(_ops.journal)
app.add_typer(_ops.state_app, name="state")
app.add_typer(_ops.setup_app, name="setup")
app.add_typer(_ops.config_app, name="config")


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
