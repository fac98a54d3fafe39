"""Serve the Graph emulator over HTTPS on loopback: ``python -m scimflow.emulators.graph --users N``.

Prints one JSON line on stdout once it accepts connections — ``{"origin", "ca_bundle", "tenant_id",
"client_id", "client_secret_file"}`` — and serves until stdin closes or it is interrupted. The client
secret is random and written to a 0600 file (never printed).
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import threading
from pathlib import Path

from scimflow.emulators.graph import GraphEmulator, GraphEmulatorSettings, generate_tenant
from scimflow.emulators.pki import make_tls_files, write_private
from scimflow.emulators.serve import serve_in_thread


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scimflow.emulators.graph", description=__doc__)
    parser.add_argument("--users", type=int, default=1000, help="generated tenant size")
    parser.add_argument("--groups", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data", type=Path, help="a fixture file (G.json) instead of a generated tenant")
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--dir", type=Path, default=None, help="folder for the CA and secret (default: a temp dir)")
    args = parser.parse_args(argv)
    folder = args.dir or Path(tempfile.mkdtemp(prefix="graph-emulator-"))
    data = json.loads(args.data.read_text()) if args.data else generate_tenant(args.users, args.groups, seed=args.seed)
    secret = secrets.token_urlsafe(24)
    secret_file = write_private(folder / "graph-client-secret", secret)
    tls = make_tls_files(folder)
    emulator = GraphEmulator(data, GraphEmulatorSettings(client_secret=secret))
    served = serve_in_thread(emulator.app, certfile=str(tls.server_cert), keyfile=str(tls.server_key), port=args.port)
    info = {
        "origin": served.origin,
        "ca_bundle": str(tls.ca_cert),
        "tenant_id": emulator.settings.tenant_id,
        "client_id": emulator.settings.client_id,
        "client_secret_file": str(secret_file),
        "users": len(data.get("users", [])),
        "groups": len(data.get("groups", [])),
    }
    sys.stdout.write(json.dumps(info) + "\n")
    sys.stdout.flush()
    done = threading.Event()

    def wait_stdin() -> None:
        sys.stdin.read()
        done.set()

    threading.Thread(target=wait_stdin, daemon=True).start()
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        served.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
