"""Benchmarks of the whole pipeline against its bounds: ``make bench`` (``python -m bench``).

``bench/graph_read.py`` and ``bench/superoffice_read.py`` are the connectors' own read benches; the
harness (``_harness``), the scenario processes (``_scenario``), the emulator process (``_emulate``) and the
planning and end-to-end scenarios (``_planning``, ``_e2e``, ``_prefect``) are this package's.
"""
