"""Durations in messages read as people write them: the deadline a caller set, not float arithmetic."""

from __future__ import annotations

import pytest

from job.errors import seconds


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (1.99998, "2 s"),  # what is left of timeout_s 2 after a millisecond of admission
        (2, "2 s"),
        (1.5, "1.5 s"),
        (0.25, "0.25 s"),
        (0.001, "0.001 s"),
        (9.96, "10 s"),
        (120.4, "120 s"),
        (86400, "86400 s"),  # never 8.64e+04
        (-0.2, "0 s"),
    ],
)
def test_a_duration_is_rounded_for_people(value: float, shown: str) -> None:
    assert seconds(value) == shown
