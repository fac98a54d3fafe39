"""Serve the SuperOffice emulator on loopback (HTTPS) with a fixture or a generated tenant.

Usage::

    python -m scimflow.emulators.superoffice --users 100000 --out /tmp/so-emu
    python -m scimflow.emulators.superoffice --data tests/fixtures/superoffice.json --out /tmp/so-emu

It creates a throw-away CA and server certificate, an app key pair, an app token and a system-user token in
``--out`` (secrets 0600), starts the server, writes ``--out/emulator.json`` and prints the same JSON as one
line on stdout: ``{"origin", "login_url", "webapi_url", "context_identifier", "client_id", "ca_bundle",
"client_secret_file", "system_user_token_file", "private_key_file", "users"}`` (file paths, never secret
values). It serves until interrupted (or stdin closes, with ``--exit-on-stdin-eof``).
"""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from scimflow.emulators.pki import make_tls_files, write_private
from scimflow.emulators.serve import serve_in_thread
from scimflow.emulators.superoffice._app import SuperOfficeEmulator, SuperOfficeEmulatorSettings
from scimflow.emulators.superoffice._generate import generate_tenant

log = logging.getLogger("scimflow.emulators.superoffice")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scimflow.emulators.superoffice", description=__doc__.split("\n")[0]
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--users", type=int, help="generate a tenant with this many users")
    source.add_argument("--data", type=Path, help="an S.json fixture to serve")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True, help="folder for the CA, secrets and emulator.json")
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--context-identifier", default="Cust12345")
    parser.add_argument("--exit-on-stdin-eof", action="store_true", help="stop when stdin closes (for benches)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")

    data: dict[str, Any] = (
        generate_tenant(args.users, seed=args.seed)
        if args.users is not None
        else json.loads(args.data.read_text(encoding="utf-8"))
    )
    out: Path = args.out
    tls = make_tls_files(out)
    app_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = write_private(
        out / "superoffice-app.pem",
        app_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
    public_pem = app_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    app_token = secrets.token_urlsafe(24)
    system_user_token = "scimflow-" + secrets.token_hex(16)
    token_file = write_private(out / "superoffice-app-token", app_token)
    sut_file = write_private(out / "superoffice-system-user-token", system_user_token)
    settings = SuperOfficeEmulatorSettings(
        context_identifier=args.context_identifier,
        app_token=app_token,
        system_user_token=system_user_token,
        app_public_key_pem=public_pem,
    )
    emulator = SuperOfficeEmulator(data, settings)
    served = serve_in_thread(emulator.app, certfile=str(tls.server_cert), keyfile=str(tls.server_key), port=args.port)
    info = {
        "origin": served.origin,
        "login_url": f"{served.origin}/login",
        "webapi_url": f"{served.origin}/{settings.context_identifier}",
        "context_identifier": settings.context_identifier,
        "client_id": settings.client_id,
        "ca_bundle": str(tls.ca_cert),
        "client_secret_file": str(token_file),
        "system_user_token_file": str(sut_file),
        "private_key_file": str(key_file),
        "users": len(data.get("users", [])),
    }
    (out / "emulator.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    sys.stdout.write(json.dumps(info) + "\n")
    sys.stdout.flush()
    log.info("SuperOffice emulator serving %d users at %s", info["users"], served.origin)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if args.exit_on_stdin_eof:

        def watch_stdin() -> None:
            sys.stdin.read()
            stop.set()

        threading.Thread(target=watch_stdin, daemon=True).start()
    stop.wait()
    served.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
