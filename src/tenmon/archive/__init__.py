"""The frame archive: reprocess years of frames (one machine or a Dask cluster) and ask it questions.

Modules: ``walk`` (find frames, fingerprints, calibration masters by convention), ``headers``
(any observatory's header -> facts, with the keywords it could not read), ``work`` (one frame,
in a worker process: the frame pipeline, plate solving, detections), ``index`` (the SQLite
per-frame index: frames, runs), ``detections`` (Parquet partitioned by night, cone queries),
``writer`` (the one writer: Parquet then the index, atomically), ``engine`` (Dask: a local
cluster or an existing scheduler), ``ingest`` (walk -> engine -> writer, resumable),
``queries`` (light curves, coverage, failures, stats), ``hook`` (the daemon's own frames).

The storage (``docs/archive.md``): ``ARCHIVE/index.sqlite`` and
``ARCHIVE/detections/night=YYYY-MM-DD/part-<batch>.parquet``. The Parquet, Dask and DuckDB
parts need the ``archive`` extra (``pip install 'tenmon[archive]'``); :func:`require` says so
in one friendly line when it is missing.
"""

from __future__ import annotations

import importlib.util

from tenmon.core.errors import ArchiveError

#: The modules of the ``archive`` extra and the PyPI name of each.
EXTRA_MODULES = {"pyarrow": "pyarrow", "dask": "dask", "distributed": "distributed",
                 "astropy_healpix": "astropy-healpix", "duckdb": "duckdb"}


def require(*modules: str) -> None:
    """Raise ``ArchiveError`` naming the missing packages of the ``archive`` extra, if any."""
    names = modules or tuple(EXTRA_MODULES)
    missing = [EXTRA_MODULES.get(m, m) for m in names if importlib.util.find_spec(m) is None]
    if missing:
        raise ArchiveError(f"the archive needs {', '.join(missing)}: pip install 'tenmon[archive]'")


__all__ = ["EXTRA_MODULES", "require"]
