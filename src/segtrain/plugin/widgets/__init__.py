"""Dock widgets. They connect signals and update layers; all computation lives in the core."""
