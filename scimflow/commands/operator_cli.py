"""The operator's verbs of ``scimflow`` (typer): ``journal``, ``state ...``, ``setup ...``, ``config ...``.

:mod:`scimflow.cli` mounts them on its app. Like the rest of the CLI, each command imports its
implementation (``*_cmd`` modules) only when it runs, so ``scimflow --help`` stays fast, and nothing here
imports Prefect (``setup prefect-secret`` imports it on use, through :mod:`tasks.prefect_secrets`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["config_app", "journal", "setup_app", "state_app"]

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="The scimflow.yaml to use.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace files that exist already.")]

state_app = typer.Typer(
    help="Show or reset what the state store holds (the Entra baseline, counts).", no_args_is_help=True
)
setup_app = typer.Typer(help="One-off setup steps: keys, certificates, tokens, secrets.", no_args_is_help=True)
config_app = typer.Typer(help="The configuration reference: JSON Schema and every key.", no_args_is_help=True)


def _exit(code: int) -> None:
    raise typer.Exit(code)


def journal(
    config: ConfigOpt = Path("scimflow.yaml"),
    user: Annotated[str | None, typer.Option("--user", "-u", help="One user: UPN (any case) or Entra id.")] = None,
    run: Annotated[str | None, typer.Option("--run", help="One run: its id, or a prefix of it.")] = None,
    plan: Annotated[str | None, typer.Option("--plan", help="One plan: its hash, or a prefix of it.")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only rows since a date (2026-11-01) or an age (7d, 12h).")
    ] = None,
    plans: Annotated[
        list[Path] | None,
        typer.Option("--plans", help="More folders holding plan files (besides the config's out_dir); repeatable."),
    ] = None,
    as_json: JsonOpt = False,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="At most this many rows (oldest first).")] = None,
) -> None:
    """What changed for a user, run or plan: the change (from → to), who approved it, and the outcome."""
    from scimflow.commands.journal_cmd import run_journal

    _exit(
        run_journal(
            config=config, user=user, run=run, plan=plan, since=since, plans=plans or [], as_json=as_json, limit=limit
        )
    )


@state_app.command("show")
def state_show(config: ConfigOpt = Path("scimflow.yaml"), as_json: JsonOpt = False) -> None:
    """The stored Entra baseline (users, when, delta links present or not), links, runs and the last run."""
    from scimflow.commands.state_cmd import show_state

    _exit(show_state(config, as_json=as_json))


@state_app.command("reset-baseline")
def state_reset_baseline(
    config: ConfigOpt = Path("scimflow.yaml"),
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Forget the Entra baseline and delta links: the next run reads Entra in full. Links stay."""
    from scimflow.commands.state_cmd import reset_baseline

    _exit(reset_baseline(config, yes=yes))


@setup_app.command("superoffice-key")
def setup_superoffice_key(
    xml_file: Annotated[Path, typer.Argument(help="The RSA private key the Developer Portal gave (<RSAKeyValue>).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the PEM (owner-only).")],
    force: ForceOpt = False,
) -> None:
    """Convert SuperOffice's XML RSA private key to a PKCS#8 PEM for `superoffice.private_key`."""
    from scimflow.commands.setup_cmd import superoffice_key

    _exit(superoffice_key(xml_file, out, force=force))


@setup_app.command("entra-certificate")
def setup_entra_certificate(
    out_key: Annotated[Path, typer.Option("--out-key", help="Where to write the private key (PEM, owner-only).")],
    out_cert: Annotated[Path, typer.Option("--out-cert", help="Where to write the certificate (PEM) to upload.")],
    days: Annotated[int, typer.Option("--days", help="Validity in days (Entra allows up to 3 years).")] = 365,
    subject: Annotated[str, typer.Option("--subject", help="The certificate's common name.")] = "scimflow",
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Make a self-signed certificate and key for the Entra app registration; print its thumbprint."""
    from scimflow.commands.setup_cmd import entra_certificate

    _exit(entra_certificate(out_key, out_cert, days=days, subject=subject, force=force, as_json=as_json))


@setup_app.command("system-user-token")
def setup_system_user_token(
    file: Annotated[
        Path | None,
        typer.Argument(help="The token endpoint's JSON answer (or a bare id_token); default: standard input."),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the token to this file (owner-only).")] = None,
    force: ForceOpt = False,
) -> None:
    """Read the system user token out of the id_token SuperOffice returns after the admin approved the app."""
    from scimflow.commands.setup_cmd import system_user_token

    _exit(system_user_token(file, out, force=force))


@setup_app.command("prefect-secret")
def setup_prefect_secret(
    name: Annotated[str, typer.Argument(help="The Secret block's name (use it as prefect-secret:NAME).")],
    from_file: Annotated[
        Path | None, typer.Option("--from-file", help="Read the value from this file instead of standard input.")
    ] = None,
) -> None:
    """Save a value (standard input, or --from-file) as a Prefect Secret block on the current Prefect API."""
    from scimflow.commands.setup_cmd import prefect_secret

    _exit(prefect_secret(name, from_file))


@config_app.command("schema")
def config_schema(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file instead of stdout.")] = None,
) -> None:
    """Print the JSON Schema of scimflow.yaml (for editors and CI checks)."""
    from scimflow.commands.config_cmd import run_schema

    _exit(run_schema(out))


@config_app.command("reference")
def config_reference(as_json: JsonOpt = False) -> None:
    """Print every configuration key with its type, default and meaning (as in docs/config.md)."""
    from scimflow.commands.config_cmd import run_reference

    _exit(run_reference(as_json))
