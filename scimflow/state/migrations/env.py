"""Alembic environment for the state store: migrations run in code, on the store's own connection.

:class:`scimflow.state.StateStore` builds an :class:`alembic.config.Config` pointing here and passes its
open connection in ``config.attributes["connection"]``; there is no ``alembic.ini``.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reachable by running the alembic CLI by hand
    msg = "scimflow migrates its state store in code: open it with scimflow.state.StateStore(url)"
    raise RuntimeError(msg)

context.configure(connection=connection, render_as_batch=True, transaction_per_migration=False)
with context.begin_transaction():
    context.run_migrations()
