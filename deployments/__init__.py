"""Per-tenant deployment settings and the Prefect automations (notifications) of scimflow."""
