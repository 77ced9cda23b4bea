"""Fixtures of the archive tests: a small synthetic archive (two observatories' header styles,
compressed and corrupt files, a variable star) and its ingest on a local Dask cluster."""

from __future__ import annotations

import pytest

pytest.importorskip("pyarrow", reason="the archive extra is not installed: pip install 'tenmon[archive]'")
pytest.importorskip("distributed", reason="the archive extra is not installed: pip install 'tenmon[archive]'")

from tenmon.archive.synthetic import make_archive  # noqa: E402


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A fresh synthetic archive per test module: ``(truth, tmp_dir)``."""
    d = tmp_path_factory.mktemp("archive")
    return make_archive(d / "frames"), d
