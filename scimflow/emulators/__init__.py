"""Local emulators of Microsoft Graph (with its identity platform) and the SuperOffice Web API (with its login service).

Each is a small stateful ASGI app, usable in process or served over HTTPS on loopback by :mod:`.host`.
"""
