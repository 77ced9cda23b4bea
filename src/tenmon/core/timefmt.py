"""Times as text: ISO 8601 in UTC with a ``Z`` (``2026-11-21T13:00:00.000Z``), everywhere tenmon
writes one (database rows, events, the plan, the night report, JSON output), and the one parser
that reads them back (``Z``, ``+00:00`` or no zone: all UTC).

``Z`` because astropy's ``Time`` and most tools outside Python read it, where ``+00:00`` fails
in some of them; Python's ``datetime.fromisoformat`` (3.11+) reads both. Within one column the
form is fixed, so text comparison in SQL (``time_utc >= ?``) orders times correctly.
"""

from __future__ import annotations

from datetime import datetime, timezone


def utc_iso(when: datetime, timespec: str = "milliseconds") -> str:
    """``when`` as ISO 8601 UTC ending in ``Z``; ``timespec`` as for ``datetime.isoformat``
    (``"milliseconds"`` by default; ``"auto"`` drops a zero fraction). A naive ``when`` is taken
    as local time, as ``datetime.astimezone`` does: tenmon passes aware times."""
    text = when.astimezone(timezone.utc).isoformat(timespec=timespec)
    return text.removesuffix("+00:00") + "Z"


def fits_time(when: datetime) -> str:
    """``when`` as a FITS ``DATE-OBS`` value: ISO 8601 UTC to the millisecond and no zone (the
    FITS standard's form, as astropy's ``Time.isot``): ``2026-11-21T13:00:00.123``."""
    return utc_iso(when).removesuffix("Z")


def parse_utc(text: str) -> datetime:
    """An ISO 8601 time as an aware UTC ``datetime`` (``Z``, an offset, or none: UTC).

    Raises:
        ValueError: not an ISO time.
    """
    t = datetime.fromisoformat(text.strip())
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


__all__ = ["fits_time", "utc_iso", "parse_utc"]
