"""Fixtures of the workflow tests (tiny configs and real crops, in helpers.tiny)."""

from helpers.tiny import em_crop, tiny_config  # noqa: F401 - fixtures
