"""The one error type of the rule engine: it names the file, the line and the rule."""

from __future__ import annotations

from scimflow.errors import ScimflowError

__all__ = ["RuleError"]


class RuleError(ScimflowError, ValueError):
    """A rule set is malformed, refers to something that does not exist, or holds an unsafe expression.

    The message reads ``FILE:LINE: rule 'NAME': problem`` (parts that are unknown are left out); the
    parts are also kept as attributes for callers that format errors themselves.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        rule: str | None = None,
    ) -> None:
        self.problem = message
        self.file = file
        self.line = line
        self.rule = rule
        where = file or "<rules>"
        if line is not None:
            where += f":{line}"
        text = f"{where}: "
        if rule is not None:
            text += f"rule '{rule}': "
        super().__init__(text + message)
