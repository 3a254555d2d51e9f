"""Fixtures of the reliability tests (tiny configs and real crops, in helpers.tiny; the panels' viewer,
GUI driver and error notifications, from the widget tests)."""

from helpers.tiny import em_crop, tiny_config  # noqa: F401 - fixtures
from plugin.conftest import docked, error_messages, gui  # noqa: F401 - fixtures
