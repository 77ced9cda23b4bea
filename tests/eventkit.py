"""Test helpers shared across test directories (tests/ is on sys.path via tests/conftest.py).

A module of its own, not ``conftest``: several directories have a conftest.py, and
``from conftest import`` picks whichever was imported first."""


def add_events_bulk(store, rows, batch: int = 1000) -> None:
    """Record many events through the store's own path (its writer thread assigns the ids),
    waiting for the writer every ``batch`` rows so the buffer never overflows.

    ``rows``: ``(time_utc ISO text, level, kind, message, data dict)`` tuples."""
    from datetime import datetime

    for i, (when, level, kind, message, data) in enumerate(rows, 1):
        store.add_event(datetime.fromisoformat(when), level, kind, message, data)
        if i % batch == 0:
            assert store.flush(60), "the store's writer did not keep up"
    assert store.flush(60), "the store's writer did not keep up"
