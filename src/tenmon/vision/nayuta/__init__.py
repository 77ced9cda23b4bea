"""Following Nayuta: its slit-viewer frame simulated, the slit and the target on it found, the target's sky position and brightness.

Nayuta (the 2 m telescope beside the 60 cm) puts its target on the slit of its spectrograph. The
slit-viewer camera images the reflective slit jaws: a small field (7' x 4') with the slit as a
*dark* band (light falling into the slit goes to the spectrograph) and the target on it, its
light partly lost, leaving a wing on either side. This package is pure (arrays, tables and WCSs in,
results out):

* :func:`render_slit_viewer`: the simulated feed: the simulated sky around the target through
  a TAN WCS of any rotation and parity, seeing, the slit transmission, sky, Poisson and read noise;
* :func:`find_slit`: the slit's angle, centre line, width and visible length (a coarse-to-fine
  projection (Radon) search of the star-masked frame, then a fit of the edge profile);
* :func:`find_target`: where along the slit a star's wings straddle it; its brightness from the
  wings (photutils aperture photometry of the light on the jaws: a *lower bound*) and from a
  PSF-times-slit model fit (an estimate corrected for the light lost in the slit);
* :func:`register_in_frame`: a similarity transform (rotation, translation, optional parity
  flip, scale within a few % of the known ratio) of slit-viewer sources into a 60 cm frame,
  by triangle voting and verification against chance;
* :func:`target_sky_position`: the target's ICRS position by solving the slit-viewer frame with
  the solver chain (``route="solve"``) or through the registration into a solved 60 cm frame
  (``route="register"``);
* :func:`locate_target`: all of the above on a slit-viewer frame (and optionally a 60 cm frame),
  with aperture photometry of the target in both: what ``tenmon nayuta locate`` and the daemon's
  sync call.

The package's modules, in that order: ``settings`` (settings, simulated geometry, the error),
``render``, ``slit``, ``target``, ``register``, ``sky`` and ``locate``; every public name is
re-exported here, so ``from tenmon.vision.nayuta import locate_target`` is the way in.

Conventions: pixel positions are 0-based ``(x, y)`` (x = column). ``angle_deg`` of the slit is its
long axis measured from image +x towards +y, in [0, 180). Along/across slit coordinates ``s``/``t``
are measured from the slit centre along ``(cos a, sin a)`` and ``(-sin a, cos a)``. Sky rotation
and parity follow the plate solver (``tenmon.vision.solve.base``): rotation is the position
angle of the image's +y (E of N), parity ``normal`` or ``flipped``.

Default slit-viewer figures chosen for the simulation (stated, not measured at Nayuta): 0.2"/px
unbinned over 7' x 4' (2100 x 1200 px; the simulated feed reads out 2 x 2 binned, 0.4"/px),
a 1.2" slit, 1.6" seeing, zero point 24.5 mag (1 e-/s; the 2 m's area is 11x the 60 cm's, less
the jaws' and relay's losses), 10 s exposures.
"""


from __future__ import annotations

from tenmon.vision.nayuta.locate import (  # noqa: F401
    Frame60,
    NayutaLocation,
    extract,
    locate_target,
    slit_viewer_chain,
)
from tenmon.vision.nayuta.register import (  # noqa: F401
    Registration,
    register_in_frame,
    sources_off_slit,
)
from tenmon.vision.nayuta.render import (  # noqa: F401
    SkyWithExtraStars,
    SlitViewerTruth,
    render_slit_viewer,
    slit_transmission,
    slit_viewer_wcs,
)
from tenmon.vision.nayuta.settings import MOFFAT_BETA, SV_SHAPE, NayutaError  # noqa: F401
from tenmon.config.vision import (  # noqa: F401
    SV_SCALE_ARCSEC,
    NayutaSettings,
    RegistrationSettings,
    SlitSearchSettings,
    TargetSearchSettings,
)
from tenmon.vision.nayuta.sky import (  # noqa: F401
    TargetSky,
    nominal_wcs,
    offset_on_sky_arcsec,
    sky_by_registration,
    sky_by_solving,
    target_sky_position,
)
from tenmon.vision.nayuta.slit import (  # noqa: F401
    SlitGeometry,
    find_slit,
)
from tenmon.vision.nayuta.target import (  # noqa: F401
    Photometry,
    TargetOnSlit,
    aperture_photometry_at,
    find_target,
    measure_fwhm,
)

__all__ = [
    "Frame60",
    "MOFFAT_BETA",
    "NayutaError",
    "NayutaLocation",
    "NayutaSettings",
    "Photometry",
    "Registration",
    "RegistrationSettings",
    "SV_SCALE_ARCSEC",
    "SV_SHAPE",
    "SkyWithExtraStars",
    "SlitGeometry",
    "SlitSearchSettings",
    "SlitViewerTruth",
    "TargetOnSlit",
    "TargetSearchSettings",
    "TargetSky",
    "aperture_photometry_at",
    "extract",
    "find_slit",
    "find_target",
    "locate_target",
    "measure_fwhm",
    "nominal_wcs",
    "offset_on_sky_arcsec",
    "register_in_frame",
    "render_slit_viewer",
    "sky_by_registration",
    "sky_by_solving",
    "slit_transmission",
    "slit_viewer_chain",
    "slit_viewer_wcs",
    "sources_off_slit",
    "target_sky_position",
]
