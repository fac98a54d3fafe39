"""The scimflow configuration file (``scimflow.yaml``): pydantic models, secret references, paths.

One YAML file (every key: docs/config.md, generated from these models) validated by pydantic, with
errors that name the key. Secrets are never literal: a secret-bearing value is a reference,

- ``env:NAME`` reads an environment variable,
- ``file:PATH`` reads a file (relative to the config file's folder),
- ``prefect-secret:NAME`` reads a Prefect Secret block (resolved by a resolver the Prefect layer
  registers; the core never imports Prefect).

References are resolved only when used (:meth:`SecretRef.reveal`) and their values never appear in
``repr``, ``str``, logs or exceptions (:mod:`scimflow.secretref`). Relative paths (``rules``, ``ca_bundle``, ``file:`` secrets, a
SQLite ``state_url``) resolve against the config file's folder.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from scimflow.errors import ConfigError
from scimflow.secretref import Secret, SecretRef, register_secret_resolver, to_secret
from scimflow.yamlsafe import UnsafeYamlError, safe_load

__all__ = [
    "Budget",
    "CertificateCredential",
    "Config",
    "ConfigError",
    "EntraConfig",
    "Guardrails",
    "ScimConfig",
    "SecretRef",
    "SuperOfficeConfig",
    "load_config",
    "register_secret_resolver",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, frozen=True)


class CertificateCredential(_Model):
    """A certificate credential for the Entra app: a private key (PEM) and its certificate's SHA-1 thumbprint."""

    private_key: Secret = Field(description="The certificate's private key (PEM), as a secret reference")
    thumbprint: str = Field(description="The certificate's SHA-1 thumbprint in hex, as Entra shows it")
    public_certificate: Secret | None = Field(
        None, description="The certificate (PEM); optional, lets `scimflow doctor` warn before it expires"
    )
    passphrase: Secret | None = Field(None, description="The private key's passphrase, when the PEM is encrypted")

    @field_validator("private_key", "passphrase", mode="before")
    @classmethod
    def _secret(cls, v: Any) -> SecretRef | None:
        return None if v is None else to_secret(v)

    @field_validator("public_certificate", mode="before")
    @classmethod
    def _public(cls, v: Any) -> SecretRef | None:
        ref = None if v is None else to_secret(v)
        return None if ref is None else SecretRef(str(ref), public=True)


class EntraConfig(_Model):
    """Microsoft Entra ID (Graph) source settings."""

    tenant_id: str = Field(
        description="The Entra tenant: its id (GUID) or a verified domain such as contoso.onmicrosoft.com"
    )
    client_id: str = Field(description="The app registration's application (client) id")
    client_secret: Secret | None = Field(
        None, description="The app's client secret; give this or `certificate` (a certificate is preferred)"
    )
    certificate: CertificateCredential | None = Field(
        None, description="A certificate credential for the app; give this or `client_secret`"
    )
    authority_host: str = Field(
        "https://login.microsoftonline.com",
        description="The identity platform's login host (another cloud, e.g. login.microsoftonline.us, or an emulator)",
    )
    graph_url: str = Field(
        "https://graph.microsoft.com",
        description="The Microsoft Graph endpoint (another national cloud, or an emulator)",
    )
    groups: list[str] = Field(
        default_factory=list,
        description="Optional scope: only transitive members of these groups (ids or display names); empty means every user",
    )
    page_size: int = Field(999, ge=1, le=999, description="Users per Graph page ($top), 1 to 999")
    timeout: float = Field(30.0, gt=0, description="Seconds one HTTP request to Graph or the login service may take")

    @field_validator("client_secret", mode="before")
    @classmethod
    def _secret(cls, v: Any) -> SecretRef | None:
        return None if v is None else to_secret(v)

    @model_validator(mode="after")
    def _one_credential(self) -> EntraConfig:
        if (self.client_secret is None) == (self.certificate is None):
            msg = "give exactly one of client_secret or certificate"
            raise ValueError(msg)
        return self

    @field_validator("authority_host", "graph_url")
    @classmethod
    def _https(cls, v: str) -> str:
        if not v.startswith("https://"):
            msg = "must be an https:// URL"
            raise ValueError(msg)
        return v.rstrip("/")


class SuperOfficeConfig(_Model):
    """SuperOffice Web API target settings (system-user flow)."""

    webapi_url: str = Field(description="The tenant's Web API base, e.g. https://online.superoffice.com/Cust12345")
    login_url: str = Field(description="SuperOffice's login service, e.g. https://online.superoffice.com/login")
    context_identifier: str = Field(description="The tenant's context identifier, e.g. Cust12345")
    client_id: str | None = Field(
        None, description="The app's client id: the audience every login JWT is checked against (needed to log in)"
    )
    client_secret: Secret = Field(
        description="The app's client secret (SuperOffice also calls it the application token)"
    )
    system_user_token: Secret = Field(description="The system user token from the administrator's approval of the app")
    private_key: Secret = Field(
        description="The app's RSA private key (PEM; `scimflow setup superoffice-key` converts the portal's XML)"
    )
    write_concurrency: int = Field(8, ge=1, le=64, description="Users written to SuperOffice at the same time, 1 to 64")
    rate_limit_rps: float | None = Field(
        None,
        gt=0,
        description="The tenant's request rate limit (requests per second), where one applies: the plan's cost "
        "estimate counts with it (the apply itself slows down on 429s)",
    )
    timeout: float = Field(30.0, gt=0, description="Seconds one HTTP request to SuperOffice may take")

    @field_validator("client_secret", "system_user_token", "private_key", mode="before")
    @classmethod
    def _secret(cls, v: Any) -> SecretRef:
        return to_secret(v)

    @field_validator("webapi_url", "login_url")
    @classmethod
    def _https(cls, v: str) -> str:
        if not v.startswith("https://"):
            msg = "must be an https:// URL"
            raise ValueError(msg)
        return v.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ScimConfig(_Model):
    """SCIM 2.0 target settings (``target: scim``): SuperOffice's Identity Management Gateway or any SCIM server."""

    base_url: str = Field(description="Opaque base; /Users and /Groups are appended")
    token: Secret = Field(description="Sent as 'Authorization: Bearer <token>' on every request")
    dialect: Literal["entra", "rfc"] = Field(
        "entra",
        description="entra: speak as Entra's provisioning service does (what SuperOffice's gateway expects); "
        "rfc: plain RFC 7644, features read from /ServiceProviderConfig",
    )
    group_prefix: str = Field(
        "scimflow",
        min_length=1,
        max_length=64,
        description="Prefix of the computed group names ({prefix}:{element}:{value})",
    )
    write_concurrency: int = Field(
        4, ge=1, le=64, description="Users written to the SCIM server at the same time, 1 to 64"
    )
    page_size: int = Field(100, ge=1, le=1000, description="Resources per SCIM list page (count), 1 to 1000")
    rate_limit_rps: float | None = Field(
        None,
        gt=0,
        description="The SCIM server's request rate limit (requests per second), where one applies: the plan's "
        "cost estimate counts with it (the apply itself slows down on 429s)",
    )
    timeout: float = Field(30.0, gt=0, description="Seconds one HTTP request to the SCIM server may take")

    @field_validator("token", mode="before")
    @classmethod
    def _secret(cls, v: Any) -> SecretRef:
        return to_secret(v)

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme == "http" and parts.hostname and _is_loopback(parts.hostname):
            pass
        elif parts.scheme != "https" or not parts.hostname:
            msg = "must be an https:// URL (http:// only for a loopback host such as 127.0.0.1)"
            raise ValueError(msg)
        if parts.query or parts.fragment or parts.username or parts.password:
            msg = "must be a plain base URL (no query, fragment or credentials)"
            raise ValueError(msg)
        return v.rstrip("/")

    @field_validator("group_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if ":" in v or v != v.strip():
            msg = "must not contain ':' or surrounding spaces (group names are '{group_prefix}:{element}:{value}')"
            raise ValueError(msg)
        return v


_BUDGET_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(%?)\s*$")


class Budget(_Model):
    """A guardrail budget: an absolute count or a percentage of a base."""

    value: float
    percent: bool

    @classmethod
    def parse(cls, raw: Any) -> Budget:
        if isinstance(raw, Budget):
            return raw
        if isinstance(raw, bool):
            msg = "must be a count (e.g. 500) or a percentage (e.g. '5%')"
            raise ValueError(msg)
        if isinstance(raw, int | float):
            if raw < 0:
                msg = "must not be negative"
                raise ValueError(msg)
            return cls(value=float(raw), percent=False)
        if isinstance(raw, str) and (m := _BUDGET_RE.match(raw)):
            return cls(value=float(m.group(1)), percent=bool(m.group(2)))
        msg = "must be a count (e.g. 500) or a percentage (e.g. '5%')"
        raise ValueError(msg)

    def limit(self, base: int) -> int:
        """The largest allowed count against ``base`` (percentages round down)."""
        if self.percent:
            return int(base * self.value / 100.0)
        return int(self.value)

    def __str__(self) -> str:
        return f"{self.value:g}%" if self.percent else f"{int(self.value)}"


BudgetValue = Annotated[
    Budget,
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": "^\\s*\\d+(\\.\\d+)?\\s*%?\\s*$"},
            ],
            "description": "A count (500) or a percentage ('5%')",
        }
    ),
]


class Guardrails(_Model):
    """Guardrail budgets (contract keys: max_retire, max_changes, min_source_users, max_source_drop)."""

    max_retire: BudgetValue = Field(
        default_factory=lambda: Budget.parse("5%"),
        description="Most retirements one run may apply: a count, or a percentage of the managed active users",
    )
    max_changes: BudgetValue = Field(
        default_factory=lambda: Budget.parse(500),
        description="Most creates + updates + retirements + reactivations together: a count or a percentage",
    )
    min_source_users: int = Field(1, ge=0, description="The fewest Entra users an extract may have to count as healthy")
    max_source_drop: BudgetValue = Field(
        default_factory=lambda: Budget.parse("20%"),
        description="The largest drop in Entra users against the last successful run: a count or a percentage",
    )

    @field_validator("max_retire", "max_changes", "max_source_drop", mode="before")
    @classmethod
    def _budget(cls, v: Any) -> Budget:
        return Budget.parse(v)


class Config(_Model):
    """The whole ``scimflow.yaml``. Build it with :func:`load_config`."""

    entra: EntraConfig = Field(description="The source: Microsoft Entra ID through Microsoft Graph")
    target: Literal["superoffice", "scim"] = Field(
        "superoffice", description="Where users go: the SuperOffice Web API, or a SCIM 2.0 server"
    )
    superoffice: SuperOfficeConfig | None = Field(
        None, description="The SuperOffice target (required when target is superoffice)"
    )
    scim: ScimConfig | None = Field(None, description="The SCIM target (required when target is scim)")
    ca_bundle: Path | None = Field(
        None, description="Extra CA certificates (PEM) to trust besides the system's, e.g. a TLS-inspecting proxy's"
    )
    rules: Path = Field(
        Path("rules/default.yaml"), description="The rule set (YAML) deciding each user's plan, role and groups"
    )
    state_url: str = Field(
        "sqlite:///.scimflow/state.db",
        description="The state store (links, runs, journal, approvals, Entra baseline): sqlite:///PATH or postgresql+psycopg://…",
    )
    out_dir: Path = Field(Path(".scimflow/out"), description="Where each run writes its plan files, one folder per run")
    plan_store: str = Field(
        ".scimflow/plans",
        description="Where each run's plan files are copied to outlive the worker (linked from the preview): "
        "a folder (a shared mount) or an fsspec URL such as s3://bucket/plans (its filesystem installed, "
        "credentials from its own configuration, never in the URL); files go to <plan_store>/<tenant>/<run>",
    )
    tenant: str | None = Field(
        None, description="A short name for this tenant (artifact keys); defaults from the context identifier"
    )
    guardrails: Guardrails = Field(
        default_factory=lambda: Guardrails(), description="Budgets that hold back a run changing too much"
    )

    _source: Path | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _target_block(self) -> Config:
        if self.target == "superoffice" and self.superoffice is None:
            msg = "superoffice: the block is required when target is superoffice (the default)"
            raise ValueError(msg)
        if self.target == "scim" and self.scim is None:
            msg = "scim: the block is required when target is scim"
            raise ValueError(msg)
        return self

    def require_superoffice(self) -> SuperOfficeConfig:
        """The ``superoffice:`` block; :class:`ConfigError` naming the key when this config has none."""
        if self.superoffice is None:
            msg = f"superoffice: this configuration has no superoffice block (target is {self.target})"
            raise ConfigError(msg)
        return self.superoffice

    def require_scim(self) -> ScimConfig:
        """The ``scim:`` block; :class:`ConfigError` naming the key when this config has none."""
        if self.scim is None:
            msg = f"scim: this configuration has no scim block (target is {self.target})"
            raise ConfigError(msg)
        return self.scim

    @field_validator("plan_store")
    @classmethod
    def _plan_store(cls, v: str) -> str:
        parts = urlsplit(v)
        if not v.strip():
            msg = "must be a folder or a URL such as s3://bucket/plans"
            raise ValueError(msg)
        if "://" in v and (parts.username or parts.password or parts.query or parts.fragment):
            msg = "must be a plain URL (no credentials, query or fragment): the filesystem's own configuration holds credentials"
            raise ValueError(msg)
        return v

    @property
    def source(self) -> Path | None:
        """The file this config was loaded from, if any."""
        return self._source

    @property
    def tenant_key(self) -> str:
        """A lowercase, dash-only tenant name usable in Prefect artifact keys."""
        if self.tenant:
            raw = self.tenant
        elif self.superoffice is not None:
            raw = self.superoffice.context_identifier
        else:
            raw = urlsplit(self.require_scim().base_url).hostname or ""
        return re.sub(r"[^a-z0-9]+", "-", raw.lower()).strip("-") or "tenant"


def _fmt_loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def _rebase(config: Config, base: Path) -> Config:
    """Resolve relative paths and ``file:`` secrets against ``base`` (the config file's folder)."""

    def path(p: Path | None) -> Path | None:
        if p is None:
            return None
        p = p.expanduser()
        return p if p.is_absolute() else (base / p).resolve()

    def secret(s: SecretRef | None) -> SecretRef | None:
        return None if s is None else s.with_base(base)

    e = config.entra
    cert = e.certificate
    if cert is not None:
        cert = cert.model_copy(
            update={
                "private_key": secret(cert.private_key),
                "public_certificate": secret(cert.public_certificate),
                "passphrase": secret(cert.passphrase),
            }
        )
    entra = e.model_copy(update={"client_secret": secret(e.client_secret), "certificate": cert})
    so = config.superoffice
    if so is not None:
        so = so.model_copy(
            update={
                "client_secret": secret(so.client_secret),
                "system_user_token": secret(so.system_user_token),
                "private_key": secret(so.private_key),
            }
        )
    scim = config.scim
    if scim is not None:
        scim = scim.model_copy(update={"token": secret(scim.token)})
    state_url = config.state_url
    m = re.match(r"^(sqlite(?:\+\w+)?:///)(.+)$", state_url)
    if m and m.group(2) != ":memory:" and not m.group(2).startswith("/"):
        state_url = m.group(1) + str((base / m.group(2)).resolve())
    return config.model_copy(
        update={
            "entra": entra,
            "superoffice": so,
            "scim": scim,
            "ca_bundle": path(config.ca_bundle),
            "rules": path(config.rules),
            "out_dir": path(config.out_dir),
            "plan_store": config.plan_store if "://" in config.plan_store else str(path(Path(config.plan_store))),
            "state_url": state_url,
        }
    )


def parse_config(data: Any, *, base: Path, source: str = "<config>") -> Config:
    """Validate an already-parsed mapping into a :class:`Config`; errors name ``source`` and the key."""
    if not isinstance(data, dict):
        msg = f"{source}: the top level must be a mapping of keys (entra, superoffice, ...)"
        raise ConfigError(msg)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        lines = [f"{source}: invalid configuration"]
        for err in exc.errors(include_input=False, include_url=False):
            lines.append(f"  {_fmt_loc(err['loc'])}: {err['msg']}")
        raise ConfigError("\n".join(lines)) from None
    cfg = _rebase(cfg, base)
    cfg._source = Path(source) if source != "<config>" else None
    return cfg


def load_config(path: str | os.PathLike[str]) -> Config:
    """Load and validate ``scimflow.yaml``.

    Raises:
        ConfigError: the file is missing or unreadable, is not YAML, or does not validate. The message
            names the file and each offending key (e.g. ``entra.client_secret``), never a secret value.
    """
    p = Path(path).expanduser().resolve()
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        msg = f"{p}: cannot read the configuration: {exc.strerror}"
        raise ConfigError(msg) from None
    try:
        data = safe_load(text)  # no anchors or aliases; size, value count and depth capped
    except UnsafeYamlError as exc:
        where = f" at line {exc.line}" if exc.line is not None else ""
        msg = f"{p}: YAML refused{where}: {exc.problem}"
        raise ConfigError(msg) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        msg = f"{p}: not valid YAML{where}: {getattr(exc, 'problem', exc)}"
        raise ConfigError(msg) from None
    return parse_config(data, base=p.parent, source=str(p))


Mode = Literal["preview", "approve", "auto"]
