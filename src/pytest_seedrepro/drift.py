"""``--seedrepro-only-drifted``: the tests that drifted in the last run, kept in pytest's cache.

Like ``--lf``: every run (on the controller under xdist) remembers which
``seeded_llm`` tests were skipped, warned or failed for a fingerprint change;
a test that ran again without drifting is forgotten, one that did not run is
kept. ``--seedrepro-only-drifted`` then selects just those.
"""

from __future__ import annotations

import pytest

CACHE_KEY = "seedrepro/drifted"


def _cache(config: pytest.Config) -> pytest.Cache | None:
    return getattr(config, "cache", None)  # None under -p no:cacheprovider


def remember(config: pytest.Config, *, ran: set[str], drifted: set[str]) -> None:
    """Update the drifted set with this run's results."""
    cache = _cache(config)
    if cache is None:
        return
    before = set(cache.get(CACHE_KEY, []))
    cache.set(CACHE_KEY, sorted((before - ran) | drifted))


def select(config: pytest.Config, items: list[pytest.Item]) -> str:
    """Keep only the drifted tests in ``items``; returns the line that says what was selected."""
    cache = _cache(config)
    drifted = set(cache.get(CACHE_KEY, [])) if cache is not None else set()
    keep = [item for item in items if item.nodeid in drifted]
    deselected = [item for item in items if item.nodeid not in drifted]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = keep
    if cache is None:
        # Selecting nothing is the safe side: running every test would refresh them all.
        return (
            "seedrepro: --seedrepro-only-drifted has no cache to ask (-p no:cacheprovider turns it off): "
            "no test selected"
        )
    if not keep:
        return "seedrepro: no test drifted in the last run: nothing to refresh"
    return f"seedrepro: refreshing {len(keep)} test(s) that drifted in the last run"
