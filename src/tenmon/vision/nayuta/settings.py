"""Nayuta following: the settings, the slit-viewer's simulated geometry, its error.

Part of :mod:`tenmon.vision.nayuta` (see its docstring for the conventions).
"""

from __future__ import annotations

import logging
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tenmon import offline
from tenmon.errors import VisionError

offline.configure()

log = logging.getLogger(__name__)

#: Default slit-viewer geometry of the simulation (see the module docstring).
SV_SCALE_ARCSEC = 0.2
SV_SHAPE = (1200, 2100)
#: Moffat beta of the simulated seeing (skyrender's default) and of the target model fit.
MOFFAT_BETA = 4.0


class NayutaError(VisionError):
    """A slit-viewer or 60 cm frame that cannot be processed at all (not 2-D, no finite pixels)."""


class SlitSearchSettings(BaseModel):
    """How :func:`find_slit` searches (``[nayuta.slit]``)."""

    model_config = ConfigDict(extra="forbid")

    coarse_px: int = Field(300, ge=64, le=2000, description="coarse search: image binned to this long side")
    coarse_step_deg: float = Field(0.5, gt=0, le=5, description="angle step of the coarse search")
    fine_px: int = Field(1100, ge=128, le=8000, description="fine search: image binned to this long side")
    fine_step_deg: float = Field(0.05, gt=0, le=1, description="angle step of the fine search")
    min_significance: float = Field(9.0, gt=0, description="dip significance (sigma) below this: no slit")
    min_segment_fraction: float = Field(0.5, gt=0, le=1, description="share of slit segments that must show it")
    star_clip_sigma: float = Field(3.0, gt=0, description="pixels above sky + this many sigma are stars")
    min_width_px: float = Field(1.2, gt=0, description="a darker band narrower than this is a bad column, not the slit")


class TargetSearchSettings(BaseModel):
    """How :func:`find_target` looks for a star straddling the slit (``[nayuta.target]``)."""

    model_config = ConfigDict(extra="forbid")

    min_significance: float = Field(5.0, gt=0, description="each wing must be this significant (sigma)")
    min_symmetry: float = Field(0.15, ge=0, le=1, description="fainter wing / brighter wing, at least")
    strip_fwhm: float = Field(1.5, gt=0, description="width of the wing strips beside the slit, in FWHM")
    aperture_fwhm: float = Field(2.5, gt=0, description="photometry aperture radius, in FWHM")
    annulus_fwhm: tuple[float, float] = Field((3.0, 5.0), description="sky annulus radii, in FWHM")


class RegistrationSettings(BaseModel):
    """How :func:`register_in_frame` matches slit-viewer stars into a 60 cm frame (``[nayuta.registration]``)."""

    model_config = ConfigDict(extra="forbid")

    n_sv_stars: int = Field(40, ge=5, le=200, description="brightest slit-viewer sources forming triangles")
    max_frame_stars: int = Field(400, ge=20, le=3000, description="cap on 60 cm sources forming triangles")
    neighbours: int = Field(6, ge=3, le=15, description="triangles: each star with pairs of its k nearest")
    match_radius_px: float = Field(3.0, gt=0, description="verification radius, 60 cm frame pixels")
    min_matches: int = Field(6, ge=4, description="fewer matched stars than this: not registered")
    false_alarm: float = Field(1e-6, gt=0, lt=1e-2, description="max probability that the match is chance")


class NayutaSettings(BaseModel):
    """Following Nayuta (``[nayuta]``): the slit viewer's scale, the route to the sky, the searches."""

    model_config = ConfigDict(extra="forbid")

    sv_scale_arcsec: float = Field(SV_SCALE_ARCSEC * 2, gt=0, description="slit-viewer pixel scale as read out")
    scale_tolerance: float = Field(0.03, gt=0, lt=0.3, description="how well both pixel scales are known")
    sv_pointing_error_deg: float = Field(
        0.05, gt=0, le=5, description="how far Nayuta's reported position may be from the slit viewer's centre"
    )
    route: Literal["auto", "solve", "register"] = Field(
        "auto", description="solve the slit viewer, register it in the 60 cm frame, or auto (solve, then register)"
    )
    min_slit_confidence: float = Field(0.3, ge=0, le=1, description="a slit found with less is not used")
    target_reference_xy: tuple[float, float] | None = Field(
        None, description="slit-viewer pixel where Nayuta puts its targets; None: the slit's middle"
    )
    max_route_disagreement_arcsec: float = Field(
        5.0, gt=0, description="both routes done and further apart than this: the answer is flagged"
    )
    sv_max_rms_arcsec: float = Field(
        0.5, gt=0, description="slit-viewer solutions with a larger rms are rejected (its pixels are small)"
    )
    slit: SlitSearchSettings = Field(default_factory=SlitSearchSettings)
    target: TargetSearchSettings = Field(default_factory=TargetSearchSettings)
    registration: RegistrationSettings = Field(default_factory=RegistrationSettings)
