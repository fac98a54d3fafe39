"""Browser tests: the Prefect UI driven by headless Chromium (Playwright), against emulated tenants."""
