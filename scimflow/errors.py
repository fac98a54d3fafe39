"""The root of every error scimflow raises on purpose.

::

    ScimflowError              the CLI prints its message and exits 1 (never a traceback)
    ├── ConfigError            here, re-exported by scimflow.config: the config is missing, malformed, or a
    │                          secret cannot be read
    ├── RuleError              scimflow.rules: a rule set is malformed or refers to something that does not exist
    ├── SchemaViolation        scimflow.schemas: a frame's structure is wrong, no row can be trusted
    ├── StateError             scimflow.state: the state store cannot be opened, migrated or written as asked
    ├── ConnectorError         scimflow.connectors.errors: an HTTP call to Entra ID or SuperOffice failed
    └── PlanChangedError       scimflow.apply: the plan on disk is not the plan that was approved

Each subclass also keeps the builtin base it had before (``ValueError``, ``RuntimeError``), so existing
``except`` clauses still catch it. Anything else escaping is a bug and is reported as one.
"""

from __future__ import annotations

__all__ = ["ConfigError", "ScimflowError"]


class ScimflowError(Exception):
    """An error scimflow raises on purpose: its message says what is wrong and where, without secrets."""


class ConfigError(ScimflowError, ValueError):
    """The configuration file is missing, malformed, or a reference cannot be resolved.

    The message names the file and the key; it never contains a secret value. Defined here (and
    re-exported by :mod:`scimflow.config`) so that secret resolvers can raise it without importing the config.
    """
