"""Secret references (``env:NAME``, ``file:PATH``, ``prefect-secret:NAME``): never a value, resolved on use.

:class:`SecretRef` holds the reference only; :meth:`SecretRef.reveal` reads the value when it is used,
and neither ``str``, ``repr`` nor an error message ever shows it. A ``file:`` secret readable by group or
others is refused. ``prefect-secret:`` is read by :mod:`tasks.prefect_secrets` (Prefect's own client, found
through an entry point on use: :func:`scheme_plugin`) unless a resolver is registered
(:func:`register_secret_resolver`).
:data:`Secret` is the pydantic field type of a secret-bearing config key (:mod:`scimflow.config`).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from pydantic import WithJsonSchema

from scimflow.errors import ConfigError

__all__ = ["Secret", "SecretRef", "register_secret_resolver", "scheme_plugin", "to_secret"]

_SECRET_RE = re.compile(r"^(env|file|prefect-secret):(.+)$")
_SECRET_RESOLVERS: dict[str, Callable[[str], str]] = {}


def scheme_plugin(scheme: str) -> Any:
    """The module serving secret ``scheme`` outside the core (``prefect-secret``: ``tasks.prefect_secrets``,
    which reads and saves Prefect Secret blocks), found through the ``scimflow.secret_schemes`` entry point
    of the installed project, so that the core itself never names the Prefect layer.

    Raises:
        ConfigError: no installed package serves the scheme.
    """
    from importlib.metadata import entry_points

    found = entry_points(group="scimflow.secret_schemes", name=scheme)
    if not found:
        msg = f"no installed plugin serves '{scheme}:' secrets (the scimflow package's entry points are missing)"
        raise ConfigError(msg)
    return next(iter(found)).load()


def register_secret_resolver(scheme: str, resolver: Callable[[str], str]) -> None:
    """Register how to read secrets of ``scheme`` (used by the Prefect layer for ``prefect-secret``)."""
    _SECRET_RESOLVERS[scheme] = resolver


class SecretRef:
    """A reference to a secret (``env:``, ``file:`` or ``prefect-secret:``), resolved on use.

    ``str()`` and ``repr()`` show the reference, never the value.
    """

    __slots__ = ("_base", "kind", "public", "target")

    def __init__(self, ref: str, base: Path | None = None, *, public: bool = False) -> None:
        m = _SECRET_RE.match(ref.strip())
        if not m:
            msg = "must be a secret reference 'env:NAME', 'file:PATH' or 'prefect-secret:NAME', not a literal value"
            raise ValueError(msg)
        self.kind: str = m.group(1)
        self.target: str = m.group(2).strip()
        self._base = base
        self.public = public  # a public certificate: a ``file:`` readable by others is fine

    def with_base(self, base: Path) -> SecretRef:
        """Return the same reference, resolving relative ``file:`` paths against ``base``."""
        return SecretRef(f"{self.kind}:{self.target}", base, public=self.public)

    @property
    def path(self) -> Path | None:
        """The file a ``file:`` reference points at, resolved; ``None`` for other kinds."""
        if self.kind != "file":
            return None
        p = Path(self.target).expanduser()
        if not p.is_absolute() and self._base is not None:
            p = self._base / p
        return p

    def reveal(self) -> str:
        """Read the secret now. Raises :class:`ConfigError` naming the reference (not the value)."""
        if self.kind == "env":
            value = os.environ.get(self.target)
            if value is None:
                msg = f"secret {self}: environment variable {self.target} is not set"
                raise ConfigError(msg)
            return value
        if self.kind == "file":
            path = self.path
            assert path is not None
            try:
                with path.open("rb") as fh:
                    mode = stat.S_IMODE(os.fstat(fh.fileno()).st_mode)  # the file read, after any symlink
                    if mode & (stat.S_IRWXG | stat.S_IRWXO) and not self.public:
                        msg = (
                            f"secret {self}: {path} is readable by group or others (mode {mode:04o}); chmod 600 {path}"
                        )
                        raise ConfigError(msg)
                    return fh.read().decode("utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
                msg = f"secret {self}: cannot read {path}: {why}"
                raise ConfigError(msg) from None
        resolver = _SECRET_RESOLVERS.get(self.kind)
        if resolver is None and self.kind == "prefect-secret":
            resolver = scheme_plugin(self.kind).read_prefect_secret  # Prefect's own client, loaded on use
        if resolver is None:
            msg = (
                f"secret {self}: no resolver for '{self.kind}:' here "
                "(prefect-secret references resolve inside Prefect flow runs and `scimflow sync`)"
            )
            raise ConfigError(msg)
        try:
            return resolver(self.target)
        except ConfigError as exc:
            msg = f"secret {self}: {exc}"
            raise ConfigError(msg) from None
        except Exception as exc:  # noqa: BLE001 - the resolver may raise anything; never echo a value
            msg = f"secret {self}: {type(exc).__name__} while reading it"
            raise ConfigError(msg) from None

    def __str__(self) -> str:
        return f"{self.kind}:{self.target}"

    def __repr__(self) -> str:
        return f"SecretRef({self.kind}:{self.target!s})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretRef) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))


def to_secret(value: Any) -> SecretRef:
    """``value`` as a :class:`SecretRef` (pydantic validators call this); ``ValueError`` for a literal."""
    if isinstance(value, SecretRef):
        return value
    if not isinstance(value, str):
        msg = "must be a secret reference string such as 'env:NAME' or 'file:PATH'"
        raise ValueError(msg)
    return SecretRef(value)


Secret = Annotated[
    SecretRef,
    WithJsonSchema(
        {
            "type": "string",
            "pattern": "^(env|file|prefect-secret):.+$",
            "description": "A secret reference: env:NAME, file:PATH or prefect-secret:NAME (never the value itself)",
        }
    ),
]
