"""Nightly auto-sync: guardrail budgets in auto mode, Graph delta, deployments, notifications, PostgreSQL."""
