"""Bench: read a 100,000-user SuperOffice tenant (emulator in another process) through SuperOfficeTarget.

    uv run python bench/superoffice_read.py [--users 100000]

Starts ``python -m scimflow.emulators.superoffice --users N`` in a subprocess (HTTPS on loopback, its own
CA), reads the reference lists and every user, and prints users/second, request count and this reader
process's peak RSS (target: < 1 GiB).
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from scimflow.config import SuperOfficeConfig
from scimflow.connectors.http import ssl_context
from scimflow.connectors.superoffice import SuperOfficeTarget


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=100_000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="so-bench-") as tmp:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "scimflow.emulators.superoffice",
                "--users",
                str(args.users),
                "--out",
                tmp,
                "--exit-on-stdin-eof",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line:
                print("emulator failed to start", file=sys.stderr)
                return 1
            info = json.loads(line)
            print(
                f"emulator up with {info['users']} users in {time.perf_counter() - started:.1f} s at {info['origin']}"
            )
            config = SuperOfficeConfig(
                webapi_url=info["webapi_url"],
                login_url=info["login_url"],
                context_identifier=info["context_identifier"],
                client_id=info["client_id"],
                client_secret=f"file:{info['client_secret_file']}",
                system_user_token=f"file:{info['system_user_token_file']}",
                private_key=f"file:{info['private_key_file']}",
            )
            with httpx.Client(verify=ssl_context(info["ca_bundle"]), trust_env=False) as c:
                c.post(f"{info['origin']}/_emulator/reset-counters")
            with SuperOfficeTarget(config, ca_bundle=Path(info["ca_bundle"])) as target:
                t0 = time.perf_counter()
                ref = target.read_reference()
                t1 = time.perf_counter()
                frame = target.read_users()
                t2 = time.perf_counter()
            with httpx.Client(verify=ssl_context(info["ca_bundle"]), trust_env=False) as c:
                stats = c.get(f"{info['origin']}/_emulator/stats").json()
            peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(
                f"reference lists: {ref.roles.height} roles, {ref.groups.height} groups, {ref.plans.height} plans, "
                f"{ref.companies.height} companies in {t1 - t0:.2f} s"
            )
            print(
                f"users read: {frame.height} in {t2 - t1:.2f} s = {frame.height / (t2 - t1):,.0f} users/s "
                f"(reference + users: {t2 - t0:.2f} s)"
            )
            print(f"requests served: {stats['requests']} (authentications: {stats['authenticates']})")
            print(f"reader peak RSS: {peak_mib:,.0f} MiB (target < 1024 MiB)")
            return 0 if frame.height == info["users"] and peak_mib < 1024 else 1
        finally:
            if proc.stdin:
                proc.stdin.close()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    raise SystemExit(main())
