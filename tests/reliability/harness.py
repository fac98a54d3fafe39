"""Helpers of the reliability suite and the soak: emulators behind fault proxies, plans, convergence, secrets.

A :class:`Rig` is one emulator pair (``tests/flows/flowkit.start_tenant``) with a :class:`FaultProxy` in
front of each emulator and a second config (``proxied.yaml``, beside the host's so its ``file:`` secrets
resolve) that points scimflow at the proxies. Tests flip faults on the proxies and knobs on the emulators.

:data:`FIGURES` counts what the suite did (faults injected, crashes survived, bad inputs tried, changes
lost, duplicates); the package fixture writes it to ``tests/reliability/figures.json`` at the end.
"""

from __future__ import annotations

import json
import logging
import os
import re
import ssl
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.flows.flowkit import Tenant, start_tenant, stop_tenant, wait_for
from tests.reliability.proxy import Fault, FaultProxy
from tests.reliability.readme import FIGURE_KEYS

SCANNER: Any = None

__all__ = [
    "FIGURES",
    "ROOT",
    "Fault",
    "Rig",
    "SecretScanner",
    "converge",
    "crash_and_converge",
    "plan_rows",
    "write_figures",
]

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
FIGURES_PATH = HERE / "figures.json"
#: What the suite did; written to figures.json (see :func:`write_figures`).
FIGURES: Counter[str] = Counter()
#: Every credential any rig configured or saw issued (the security test scans for all of them).
SECRETS: set[str] = set()
#: Files holding secrets on purpose (the host's credential files): never scanned, everything else is.
SECRET_FILES = frozenset(
    {
        "entra-client-secret",
        "superoffice-client-secret",
        "superoffice-system-user-token",
        "superoffice-app.pem",
        "emulator-server.key",
        "entra-app-key.pem",
    }
)
#: Folders whose files the security test scans (rig folders: plan files, state DB, logs, configs).
SCANNED_FOLDERS: list[Path] = []
#: Texts seen during the suite (exception tracebacks, child process output), scanned by the security test.
TEXTS: list[tuple[str, str]] = []
#: Guardrails wide enough for convergence runs; fault runs keep the contract's defaults for retire.
WIDE = {"max_retire": "100%", "max_changes": 100_000, "min_source_users": 1}
REAL = {"max_retire": "5%", "max_changes": 100_000, "min_source_users": 1, "max_source_drop": "20%"}


# --- plans ------------------------------------------------------------------------------------------


def plan_rows(out: Path) -> list[dict[str, Any]]:
    """``plan.jsonl`` parsed, ``reason`` reduced to its presence (its wording is free)."""
    rows = [json.loads(line) for line in (out / "plan.jsonl").read_text().splitlines() if line.strip()]
    for r in rows:
        r["reason"] = r["reason"] is not None
    return rows


def retire_keys(rows: Iterable[dict[str, Any]]) -> set[str]:
    return {r["key"] for r in rows if r["action"] == "retire"}


# --- the rig ----------------------------------------------------------------------------------------


@dataclass
class Rig:
    """An emulator pair behind two fault proxies, and the config that goes through them."""

    tenant: Tenant
    graph_proxy: FaultProxy
    so_proxy: FaultProxy
    config: Path
    runs: int = 0
    errors: list[BaseException] = field(default_factory=list)

    @property
    def host(self) -> Any:
        return self.tenant.host

    @property
    def folder(self) -> Path:
        return self.tenant.folder

    def faults(self, graph: Iterable[Fault] = (), so: Iterable[Fault] = ()) -> None:
        self.graph_proxy.set_faults(*graph)
        self.so_proxy.set_faults(*so)

    def injected(self) -> int:
        return self.graph_proxy.injected + self.so_proxy.injected

    def graph_knobs(self, **values: Any) -> None:
        with self._admin(self.host.graph_origin) as c:
            c.post("/_emulator/settings", json=values).raise_for_status()

    def so_knobs(self, **values: Any) -> None:
        with self._admin(self.host.superoffice_origin) as c:
            c.post("/_emulator/settings", json=values).raise_for_status()

    def graph_admin(self, method: str, path: str, **kw: Any) -> httpx.Response:
        with self._admin(self.host.graph_origin) as c:
            r = c.request(method, path, **kw)
        r.raise_for_status()
        return r

    def so_stats(self) -> dict[str, int]:
        with self._admin(self.host.superoffice_origin) as c:
            return dict(c.get("/_emulator/stats").json())

    def graph_stats(self) -> dict[str, int]:
        with self._admin(self.host.graph_origin) as c:
            return dict(c.get("/_emulator/stats").json())

    def _admin(self, origin: str) -> httpx.Client:
        ctx = ssl.create_default_context(cafile=str(self.host.ca_bundle))
        return httpx.Client(base_url=origin, verify=ctx, timeout=30, trust_env=False)

    def plan(self, out: Path, *, rules: Path | None = None, full: bool = True) -> tuple[list[dict[str, Any]], str]:
        """Extract, validate and plan through the proxies (in this process); the plan rows and the verdict."""
        from scimflow.config import load_config
        from scimflow.pipeline import run_plan_stages

        self.runs += 1
        outcome, _, _ = run_plan_stages(load_config(self.config), rules=rules, out=out, full=full)
        return plan_rows(out), outcome.verdict_name

    def secrets(self) -> set[str]:
        """Every credential configured or issued so far: configured secrets, key material, tokens, tickets."""
        s = self.host.secrets
        found = {s.entra_client_secret or "", s.app_token, s.system_user_token}
        found |= _pem_fragments(s.app_private_key_pem)
        found |= self.graph_proxy.credentials | self.so_proxy.credentials
        found |= set(getattr(getattr(self.host.graph, "_tokens", None), "_tokens", {}) or {})
        found |= set(getattr(self.host.superoffice, "_tickets", {}) or {})
        for token in list(found):
            if token.startswith("eyJ"):  # a JWT: its signature part alone must not leak either
                found.add(token.rsplit(".", 1)[-1])
        return {x for x in found if x and len(x) >= 8}


def _pem_fragments(pem: bytes) -> set[str]:
    lines = [ln for ln in pem.decode().splitlines() if ln and not ln.startswith("-----")]
    return {ln for ln in lines[1:-1:4] if len(ln) >= 40}


def write_proxied_config(tenant: Tenant, graph: FaultProxy, so: FaultProxy, **extra: Any) -> Path:
    """``proxied.yaml`` beside the host's config: the same secrets and rules, URLs through the proxies."""
    data = yaml.safe_load(tenant.config.read_text())
    ctx = data["superoffice"]["context_identifier"]
    data["entra"].update(authority_host=graph.origin, graph_url=graph.origin)
    data["superoffice"].update(webapi_url=f"{so.origin}/{ctx}", login_url=f"{so.origin}/login")
    for section, values in extra.items():
        if isinstance(values, dict) and isinstance(data.get(section), dict):
            data[section].update(values)
        else:
            data[section] = values
    path = tenant.folder / "proxied.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@contextmanager
def rig(
    folder: Path,
    graph_data: dict[str, Any],
    so_data: dict[str, Any],
    *,
    guardrails: dict[str, Any] | None = None,
    page_size: int = 7,
    so_page: int = 10,
    timeout: float = 1.5,
    rules: Path | None = None,
) -> Iterator[Rig]:
    """An emulator pair behind fault proxies (small pages so paging happens, short client timeouts)."""
    tenant = start_tenant(
        folder,
        graph_data,
        so_data,
        guardrails=guardrails or REAL,
        rules=rules,
        superoffice_settings={"page_size_max": so_page},
    )
    host = tenant.host
    cert, key = host.folder / "emulator-server.pem", host.folder / "emulator-server.key"
    gp = FaultProxy(host.graph_origin, cert, key, host.ca_bundle)
    sp = FaultProxy(host.superoffice_origin, cert, key, host.ca_bundle)
    config = write_proxied_config(
        tenant, gp, sp, entra={"page_size": page_size, "timeout": timeout}, superoffice={"timeout": timeout}
    )
    try:
        yield Rig(tenant=tenant, graph_proxy=gp, so_proxy=sp, config=config)
    finally:
        FIGURES["faults_injected"] += gp.injected + sp.injected
        remember(tenant, Rig(tenant=tenant, graph_proxy=gp, so_proxy=sp, config=config).secrets())
        gp.stop()
        sp.stop()
        stop_tenant(tenant)


def remember(tenant: Tenant, extra: Iterable[str] = ()) -> None:
    """Note a tenant's credentials and folder for the security scan."""
    s = tenant.host.secrets
    found = {s.entra_client_secret or "", s.app_token, s.system_user_token, *_pem_fragments(s.app_private_key_pem)}
    found |= set(getattr(getattr(tenant.host.graph, "_tokens", None), "_tokens", {}) or {})
    found |= set(getattr(tenant.host.superoffice, "_tickets", {}) or {})
    SECRETS.update(x for x in (found | set(extra)) if x and len(x) >= 8)
    SCANNED_FOLDERS.append(tenant.folder)


# --- convergence -----------------------------------------------------------------------------------


def converge(config_path: Path, out: Path) -> dict[str, Any]:
    """Plan and apply in this process (no Prefect), recording a successful run; the summary."""
    from scimflow.apply import apply_plan
    from scimflow.config import load_config
    from scimflow.pipeline import open_store, run_plan_stages

    config = load_config(config_path)
    outcome, entra, _ = run_plan_stages(config, out=out, full=True)
    with open_store(config) as store:
        run_id = store.start_run("auto", plan_hash=outcome.plan_hash, source_users=outcome.source_users)
        report = apply_plan(
            config,
            store,
            out,
            outcome.plan_hash,
            matched_pairs=outcome.plan.matched_pairs,
            entra_frame=entra.frame,
            entra_links=entra.links,
            run_id=run_id,
        )
        assert report.failed == 0, report
        store.finish_run(run_id, "completed", {}, outcome.source_users)
    return outcome.summary


# --- crash and converge ---------------------------------------------------------------------------


@dataclass
class CrashOutcome:
    """What a crash series did: kill points reached, and what the snapshot says afterwards."""

    kills: list[int]
    planned: dict[str, dict[str, Any]]
    duplicates: list[str]
    lost: list[str]
    outputs: list[str]


def _planned_changes(plan_dir: Path) -> dict[str, dict[str, Any]]:
    """key -> {action, to-values} of every change row of a plan folder."""
    out: dict[str, dict[str, Any]] = {}
    for r in plan_rows(plan_dir):
        if r["action"] in ("create", "update", "retire", "reactivate"):
            out[r["key"]] = {
                "action": r["action"],
                "to": {f: c["to"] for f, c in r["changes"].items()},
                "associate_id": r["associate_id"],
            }
    return out


def _sync_cmd(config: Path) -> list[str]:
    return [sys.executable, "-m", "flows.run", "--config", str(config), "--approve", "--poll-interval", "1"]


def crash_and_converge(
    tenant: Tenant,
    kill_after: list[int],
    *,
    latency: float = 0.08,
    timeout: float = 240,
    final_in_process: bool = False,
) -> CrashOutcome:
    """Run the sync in a child process, SIGKILL it once the emulator counted each of ``kill_after`` writes,
    rerun, and finally let it finish; then compare the emulator's snapshot with the first plan."""
    import signal

    tenant.so_settings(latency=latency)
    kills: list[int] = []
    outputs: list[str] = []
    first_plan: dict[str, dict[str, Any]] | None = None
    out_root = tenant.folder / ".scimflow" / "out"
    for k in kill_after:
        log = tenant.folder / f"run-kill-{k}.log"
        with log.open("wb") as fh:
            proc = subprocess.Popen(_sync_cmd(tenant.config), cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
            try:
                wait_for(
                    lambda k=k, proc=proc: tenant.so_stats()["writes"] >= k or proc.poll() is not None,
                    timeout=timeout,
                    step=0.02,
                )
            finally:
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
        outputs.append(log.read_text(errors="replace"))
        if proc.returncode == -signal.SIGKILL:
            kills.append(tenant.so_stats()["writes"])
        if first_plan is None and out_root.exists():
            dirs = sorted(out_root.iterdir())
            if dirs and (dirs[0] / "plan.jsonl").exists():
                first_plan = _planned_changes(dirs[0])
    tenant.so_settings(latency=0.0)
    if final_in_process:  # the rerun after the last kill, in this process (saves a child's start-up)
        from tests.flows.flowkit import params, run_flow

        result = run_flow(params(tenant, cli_approved=True))
        outputs.append(result.model_dump_json())
        assert result.exit_code == 0, result
    else:
        final = subprocess.run(_sync_cmd(tenant.config), cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        outputs.append(final.stdout + final.stderr)
        assert final.returncode == 0, final.stdout[-3000:] + final.stderr[-3000:]
    assert first_plan is not None, "the first run was killed before it wrote its plan"
    snap = tenant.so_snapshot()
    duplicates, lost = check_snapshot(snap, first_plan)
    FIGURES["crashes_survived"] += len(kills)
    FIGURES["duplicates"] += len(duplicates)
    FIGURES["changes_lost"] += len(lost)
    FIGURES["changes_checked"] += len(first_plan)
    return CrashOutcome(kills, first_plan, duplicates, lost, outputs)


def check_snapshot(snap: dict[str, Any], planned: dict[str, dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(UserNames held by more than one user, planned changes not found in the snapshot)."""
    names = Counter(str(u.get("UserName") or "").strip().lower() for u in snap["users"] if u.get("UserName"))
    duplicates = sorted(n for n, c in names.items() if c > 1)
    users = {str(u.get("UserName") or "").strip().lower(): u for u in snap["users"] if u.get("UserName")}
    by_id = {int(u["AssociateId"]): u for u in snap["users"]}
    lost: list[str] = []
    for key, change in planned.items():
        action, to = change["action"], change["to"]
        if action == "create":
            user = users.get(str(to.get("user_name") or key).strip().lower())
        else:
            user = by_id.get(int(change["associate_id"])) if change["associate_id"] is not None else users.get(key)
        if user is None:
            lost.append(f"{action} {key}: no such user")
            continue
        for problem in _differs(user, to):
            lost.append(f"{action} {key}: {problem}")
    return duplicates, lost


def _differs(user: dict[str, Any], to: dict[str, Any]) -> Iterator[str]:
    person = user.get("Person") or {}
    read = {
        "user_name": user.get("UserName"),
        "first_name": person.get("Firstname"),
        "last_name": person.get("Lastname"),
        "email": person.get("Email"),
        "title": person.get("Title"),
        "role": (user.get("Role") or {}).get("Value"),
        "primary_group": (user.get("UserGroup") or {}).get("Value"),
        "secondary_groups": sorted(str(g.get("Value")) for g in user.get("OtherGroups") or []),
        "active": not bool(user.get("Deleted")),
    }
    for fieldname, want in to.items():
        if fieldname not in read:
            continue  # licences, company and phone are checked by the product's own verify step
        have = read[fieldname]
        if fieldname == "secondary_groups":
            ok = set(have) == set(want or [])
        elif fieldname in ("user_name", "email"):
            ok = str(have or "").strip().lower() == str(want or "").strip().lower()
        elif fieldname == "active":
            ok = have == bool(want)
        else:
            ok = (have or None) == (want or None)
        if not ok:
            yield f"{fieldname} is {have!r}, planned {want!r}"


# --- secrets ----------------------------------------------------------------------------------------


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self._lock2 = threading.Lock()
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:
            text = repr(record.__dict__)
        with self._lock2:
            self.lines.append(text)


@dataclass
class SecretScanner:
    """Collects every text the suite sees (logs at DEBUG, exceptions, files, process output) and scans it."""

    texts: list[tuple[str, str]] = field(default_factory=list)
    handler: _Capture = field(default_factory=_Capture)

    def install(self) -> None:
        root = logging.getLogger()
        root.addHandler(self.handler)
        self._old_level = root.level
        root.setLevel(logging.DEBUG)
        for name in ("scimflow", "httpx", "httpcore", "msal"):
            logging.getLogger(name).setLevel(logging.DEBUG)

    def uninstall(self) -> None:
        logging.getLogger().removeHandler(self.handler)
        logging.getLogger().setLevel(self._old_level)

    def add(self, where: str, text: str) -> None:
        self.texts.append((where, text))

    def add_exception(self, where: str, exc: BaseException) -> None:
        self.add(where, "".join(traceback.format_exception(exc)) + repr(exc) + str(getattr(exc, "__dict__", "")))

    def add_tree(self, folder: Path) -> int:
        """Every file under ``folder`` except the credential files themselves; returns the count."""
        n = 0
        for p in sorted(folder.rglob("*")):
            if p.is_file() and p.name not in SECRET_FILES:
                self.add(str(p), p.read_bytes().decode("utf-8", errors="replace"))
                n += 1
        return n

    def leaks(self, secrets: Iterable[str]) -> list[str]:
        texts = [*self.texts, ("log", "\n".join(self.handler.lines))]
        found: list[str] = []
        for secret in set(secrets):
            for where, text in texts:
                if secret in text:
                    found.append(f"{secret[:6]}… in {where}")
        for where, text in texts:
            if re.search(r"-----BEGIN [A-Z ]*PRIVATE KEY-----", text):
                found.append(f"private key material in {where}")
        return sorted(set(found))


# --- figures ----------------------------------------------------------------------------------------


def write_figures(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write figures.json (the README's Reliability figures) from :data:`FIGURES`."""
    figures = {k: int(FIGURES.get(k, 0)) for k in FIGURE_KEYS}
    figures.update(extra or {})
    figures["written_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    FIGURES_PATH.write_text(json.dumps(figures, indent=1, sort_keys=False) + "\n")
    return figures
