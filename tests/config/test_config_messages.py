"""Every value of every config field gives the same result as the hand-written checks did before the
port to pydantic: the value stored, or the same one sentence (recorded in config_messages.json; how to
regenerate it: tests/config/config_messages.py)."""

from __future__ import annotations

import json

from config_messages import GOLDEN, outcomes


def _differences(expected: dict, got: dict) -> list[str]:
    out = []
    for key, was in expected.items():
        if key not in got:
            out.append(f"{key}: no longer checked (a field removed?)")
            continue
        now = got[key]
        pairs = zip(was, now) if isinstance(was, list) else [(was, now)]
        out += [f"{key}: was {a!r}, now {b!r}" for a, b in pairs if a != b]
    return out


def test_every_field_keeps_its_sentences_and_conversions():
    expected = json.loads(GOLDEN.read_text())
    got = outcomes()  # a field added since the recording is not compared (regenerate to include it)
    changed = _differences(expected, got)
    assert not changed, f"{len(changed)} outcomes changed:\n" + "\n".join(changed[:40])
