"""Shared settings of the archive tests."""

from __future__ import annotations

from tenmon.archive.work import ArchiveSettings
from tenmon.config.vision import CatalogSettings, SolverSettings

#: The solver as the tests' frames need it: the simulated sky they were rendered from.
SETTINGS = ArchiveSettings(solver=SolverSettings(order=["hinted"], catalog=CatalogSettings(provider="simulated")))
