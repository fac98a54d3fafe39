"""Connectors: the Graph source, the SuperOffice target, and their shared HTTP seam."""
