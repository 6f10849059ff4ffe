"""When a Silver build must purge the history of every table because 90+ now suppresses values an earlier version
published (silver.job._published_turned_90): a published patient turning 90+, or a merge that may have moved one
under a new key; never a new patient who is 90+ from the start (every day's admissions would erase time travel)."""

from __future__ import annotations

import pytest

from silver.job import _published_turned_90

pytestmark = pytest.mark.fast


def test_a_published_patient_turning_90_purges() -> None:
    assert _published_turned_90({"a": False, "b": True}, {"a": True, "b": True})


def test_a_new_patient_over_90_keeps_history() -> None:
    assert not _published_turned_90({"a": False, "b": True}, {"a": False, "b": True, "c": True})
    assert not _published_turned_90({"a": False}, {"a": False, "c": False})


def test_leaving_90_plus_keeps_history() -> None:
    # earlier versions hold the suppressed (coarser) values: nothing to erase
    assert not _published_turned_90({"a": True}, {"a": False})


def test_a_new_90_plus_key_with_a_key_gone_purges() -> None:
    # a merge: "a" (published under 90) is now under "c", which is 90+
    assert _published_turned_90({"a": False, "b": False}, {"b": False, "c": True})
    # a key gone but no new 90+ key: nothing newly suppressed
    assert not _published_turned_90({"a": False, "b": False}, {"b": False, "c": False})
