"""Nayuta following: the slit-viewer's simulated geometry, its error (the settings, ``[nayuta.locate]``,
are in :mod:`tenmon.config.vision`).

Part of :mod:`tenmon.vision.nayuta` (see its docstring for the conventions).
"""

from __future__ import annotations

import logging

from tenmon.core import offline
from tenmon.core.errors import VisionError

offline.configure()

log = logging.getLogger(__name__)

#: Default slit-viewer geometry of the simulation (see the module docstring); its pixel scale,
#: SV_SCALE_ARCSEC, is with the settings in tenmon.config.vision.
SV_SHAPE = (1200, 2100)
#: Moffat beta of the simulated seeing (skyrender's default) and of the target model fit.
MOFFAT_BETA = 4.0


class NayutaError(VisionError):
    """A slit-viewer or 60 cm frame that cannot be processed at all (not 2-D, no finite pixels)."""


