"""Microsoft Graph + identity platform emulator (users, groups, transitive members, delta, tokens).

Usage::

    emu = GraphEmulator(data, GraphEmulatorSettings(client_secret="..."))
    served = serve_in_thread(emu.app, certfile=tls.server_cert, keyfile=tls.server_key)
    # entra.authority_host = entra.graph_url = served.origin

``python -m scimflow.emulators.graph --users N`` serves a generated tenant (see ``__main__``).
"""

from __future__ import annotations

from scimflow.emulators.graph._app import GraphEmulator
from scimflow.emulators.graph._generate import generate_tenant
from scimflow.emulators.graph._settings import GraphEmulatorSettings

__all__ = ["GraphEmulator", "GraphEmulatorSettings", "generate_tenant"]
