"""The one place that turns a config into a :class:`~scimflow.apply.Writer` (``target:`` names which).

The connectors are imported inside :func:`new_writer` only: no module of the apply package imports a
target's package (tests/test_apply_boundaries.py checks it), so the engine stays target-agnostic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scimflow.apply import Writer
    from scimflow.config import Config

__all__ = ["new_writer"]


def new_writer(config: Config) -> Writer:
    """The writer of the config's ``target:`` (``superoffice``: the Web API; ``scim``: a SCIM service provider).

    The connectors are imported here only, so the engine never imports a target's package.
    """
    if config.target == "scim":
        from scimflow.computed_groups import img_rules
        from scimflow.connectors.scim import ScimWriter
        from scimflow.rules import load_rules

        scim = config.require_scim()
        # the computed groups the rules can give: how a server that refuses listing is read
        groups = [r.group for r in img_rules(load_rules(config.rules), scim.group_prefix)]
        return ScimWriter(scim, ca_bundle=config.ca_bundle, group_names=groups)
    from scimflow.connectors.superoffice import SuperOfficeWriter

    return SuperOfficeWriter(config.require_superoffice(), ca_bundle=config.ca_bundle)
