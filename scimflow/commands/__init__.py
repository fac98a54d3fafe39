"""Implementations of the CLI verbs: plain functions returning exit codes (no typer, no Prefect)."""
