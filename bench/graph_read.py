"""Bench: read a large generated tenant (users + transitive memberships) from the Graph emulator.

    uv run python bench/graph_read.py --users 100000 --groups 50

The emulator runs in another process (``python -m scimflow.emulators.graph``), so the figures below are
the reading process's alone: users/second, peak RSS (``ru_maxrss``; target < 1 GiB at 100k users),
requests made, and the emulator's request and token counts. Then one delta round with no changes.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import time
from pathlib import Path

import httpx

from scimflow.config import EntraConfig
from scimflow.connectors.graph import GraphSource, clear_app_cache
from scimflow.connectors.http import ssl_context


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=50)
    parser.add_argument("--page-size", type=int, default=999)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)

    started = time.monotonic()
    emulator = subprocess.Popen(
        [sys.executable, "-m", "scimflow.emulators.graph", "--users", str(args.users), "--groups", str(args.groups)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert emulator.stdout is not None
        info = json.loads(emulator.stdout.readline())
        print(f"emulator up at {info['origin']} with {info['users']} users, {info['groups']} groups "
              f"({time.monotonic() - started:.1f} s to generate and start)")
        ca = Path(info["ca_bundle"])
        config = EntraConfig(
            tenant_id=info["tenant_id"],
            client_id=info["client_id"],
            client_secret=f"file:{info['client_secret_file']}",
            authority_host=info["origin"],
            graph_url=info["origin"],
            page_size=args.page_size,
        )
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with GraphSource(config, ca_bundle=ca) as graph:
            t0 = time.monotonic()
            frame = graph.read_users()
            elapsed = time.monotonic() - t0
            requests = graph.requests
            memberships = int(frame.get_column("group_ids").list.len().sum())
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            t1 = time.monotonic()
            first = graph.read_delta(frame, None)
            t2 = time.monotonic()
            again = graph.read_delta(first.frame, first.links)
            t3 = time.monotonic()
        with httpx.Client(verify=ssl_context(ca), trust_env=False) as c:
            stats = c.get(f"{info['origin']}/_emulator/stats").json()
        peak_all = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(f"read {frame.height} users with {memberships} memberships in {elapsed:.2f} s "
              f"= {frame.height / elapsed:,.0f} users/s")
        print(f"requests by the reader: {requests} (full read); emulator saw {stats['requests']} requests, "
              f"{stats['token_requests']} token requests")
        print(f"peak RSS of the reading process: {peak / 1024:.0f} MiB after the full read "
              f"({rss_before / 1024:.0f} MiB before; {peak_all / 1024:.0f} MiB at the end)")
        print(f"delta: initial (links + full read) {t2 - t1:.2f} s; no-change round {t3 - t2:.3f} s in "
              f"{again.requests} requests, {again.frame.height} users")
        verdict = "OK" if peak < 1024 * 1024 else "OVER 1 GiB"
        print(f"RSS target < 1 GiB: {verdict}")
        return 0 if peak < 1024 * 1024 else 1
    finally:
        clear_app_cache()  # close msal's keep-alive connection so the emulator stops at once
        if emulator.stdin is not None:
            emulator.stdin.close()
        try:
            emulator.wait(timeout=30)
        except subprocess.TimeoutExpired:
            emulator.kill()


if __name__ == "__main__":
    raise SystemExit(main())
