"""Connectors: the Graph source, the SuperOffice and SCIM targets, and their shared HTTP seam."""
