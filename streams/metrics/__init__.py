"""Declared metrics: what users ask Riverbed to compute, and the window state computing it."""
