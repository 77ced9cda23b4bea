"""Times as text: one form (ISO UTC with a Z) that astropy reads back, and one parser."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from astropy.time import Time

from tenmon.daemon.services.night import night_report
from tenmon.daemon.store import utc_iso as store_utc_iso
from tenmon.core.timefmt import fits_time, parse_utc, utc_iso

JST = timezone(timedelta(hours=9))


def test_utc_iso_ends_in_z_and_astropy_reads_it():
    t = datetime(2026, 11, 21, 22, 0, 0, 123456, tzinfo=JST)
    assert utc_iso(t) == "2026-11-21T13:00:00.123Z"
    assert utc_iso(t, timespec="seconds") == "2026-11-21T13:00:00Z"
    assert utc_iso(t.replace(microsecond=0), timespec="auto") == "2026-11-21T13:00:00Z"
    assert Time(utc_iso(t)).isot == "2026-11-21T13:00:00.123"
    assert store_utc_iso is utc_iso  # the store writes the same form


@pytest.mark.parametrize("text", ["2026-11-21T13:00:00Z", "2026-11-21T13:00:00+00:00",
                                  "2026-11-21T22:00:00+09:00", "2026-11-21T13:00:00"])
def test_parse_utc_reads_every_form_as_utc(text):
    assert parse_utc(text) == datetime(2026, 11, 21, 13, tzinfo=timezone.utc)
    assert parse_utc(text).tzinfo == timezone.utc


def test_text_order_is_time_order():
    """SQL compares stored times as text: the form keeps that true within a column."""
    base = datetime(2026, 11, 21, 23, 59, 59, 999000, tzinfo=timezone.utc)
    times = [base + timedelta(milliseconds=k) for k in (-1000, 0, 1, 1000, 86400000)]
    texts = [utc_iso(t) for t in times]
    assert texts == sorted(texts)


def test_the_night_report_writes_z(tmp_path):
    from tenmon.daemon.services.frames import FRAMES_SCHEMA
    from tenmon.daemon.services.night import NIGHT_LOG_SCHEMA
    from tenmon.daemon.store import Store

    store = Store(tmp_path / "t.sqlite")
    try:
        store.add_schema(NIGHT_LOG_SCHEMA)
        store.add_schema(FRAMES_SCHEMA)
        t = datetime(2026, 11, 21, 13, tzinfo=timezone.utc)
        store.add_event(t, "error", "test", "something broke")
        r = night_report(store, start=t - timedelta(hours=1), end=t + timedelta(hours=1))
        assert r["errors"][0]["time_utc"] == "2026-11-21T13:00:00.000Z"
        Time(r["errors"][0]["time_utc"])  # astropy parses it
    finally:
        store.close()


def test_fits_time_is_isot_without_a_zone():
    t = datetime(2026, 11, 21, 22, 0, 0, 123456, tzinfo=JST)
    assert fits_time(t) == "2026-11-21T13:00:00.123" == Time(t).utc.isot
    assert parse_utc(fits_time(t)) == t.replace(microsecond=123000)
