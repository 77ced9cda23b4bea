"""Collecting labelled IR frames for `tenmon encoder adapt`, at no cost to observing.

:func:`install_encoder_collect` gives an IR-camera encoder (at a site, or the simulated one) a
:class:`~tenmon.drivers.ir_encoder.FrameCollector` and feeds its
:class:`~tenmon.vision.slit.labels.SiteLabeller` every control tick with what the relays did
(slit open/close relay, dome CW/CCW relay), the slit driver's verified end states and the end of a
homing (the dome at its home azimuth). The encoder's worker offers each frame it reads; the
collector writes the frames it can label to ``[encoder] collect_dir`` (default
``DATA_DIR/encoder-labels``): ``frames/*.png`` and ``labels.jsonl``.

Collecting is on with ``[encoder] collect = true``, or at run time with ``tenmon encoder collect
on`` (``POST /api/v1/encoder/collect``); ``GET /api/v1/encoder/collect`` says how many frames
were written. It never moves anything and never delays a tick (the labeller is a few arithmetic
operations; images are written by the encoder's worker thread).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)


class CollectBody(BaseModel):
    """``POST /encoder/collect``: switch collecting on or off."""

    model_config = ConfigDict(extra="forbid", strict=True)

    on: bool = Field(description="true: collect labelled frames; false: stop")


def install_encoder_collect(obs) -> Any:
    """Wire frame collection into ``obs`` when its encoder can collect; returns the collector.

    Adds a tick hook (the labeller's relay history), a status section ``encoder_collect`` and the
    routes. Returns None (and installs nothing) for encoders without frames (the simple simulated
    one). Idempotent.
    """
    from tenmon.drivers.ir_encoder import FrameCollector
    from tenmon.vision.slit.labels import LabellerSettings, SiteLabeller

    encoder = obs.encoder
    if not hasattr(encoder, "collector"):
        return None
    if getattr(obs, "encoder_collector", None) is not None:
        return obs.encoder_collector
    cfg = obs.config
    enc = cfg.encoder
    folder = getattr(enc, "collect_dir", None) or Path(cfg.paths.data_dir) / "encoder-labels"
    settings = LabellerSettings(travel_time_s=cfg.slit.travel_time_s,
                                dome_speed_deg_s=cfg.dome.speed_initial_deg_s,
                                dome_spinup_s=getattr(cfg.dome, "spinup_s", 1.5),
                                dome_coast_s=cfg.dome.coast_initial_s)
    labeller = SiteLabeller(settings)
    collector = FrameCollector(labeller, Path(folder), interval_s=getattr(enc, "collect_interval_s", 20.0),
                               enabled=bool(getattr(enc, "collect", False)))
    encoder.collector = collector
    obs.encoder_collector = collector
    home = cfg.dome.home_azimuth_deg
    state = {"homing": False, "verified": None}

    def tick() -> None:
        t = obs.clock.now().timestamp()
        labeller.observe(t, slit_relay=obs.slit.motor.direction(), dome_relay=obs.dome.motor.direction())
        dome = obs.dome
        homing = getattr(dome, "_purpose", "") == "home" and dome.slewing
        if state["homing"] and not homing and dome.error is None and dome.at_home:
            labeller.homed(t, home)  # right after a homing: the dome is at its home azimuth
        state["homing"] = homing
        slit = obs.slit
        st = getattr(slit.state, "value", str(slit.state)).lower()
        if not slit.moving and slit.verified and st in ("open", "closed"):
            if state["verified"] != st:
                labeller.verified(t, st)
            state["verified"] = st
        else:
            state["verified"] = None

    obs.tick_hooks.append(tick)
    obs.status_hooks["encoder_collect"] = collector.status
    obs.api_routes.extend(collect_routes(collector))
    return collector


def collect_routes(collector) -> list:
    """``GET /encoder/collect`` and ``POST /encoder/collect``."""
    from tenmon.daemon.api.kit import COMMAND_ERRORS, Route, json_response

    schema = {"type": "object", "required": ["enabled", "folder", "labels", "written", "offered"],
              "properties": {"enabled": {"type": "boolean"}, "folder": {"type": "string"},
                             "labels": {"type": "string"}, "written": {"type": "integer"},
                             "offered": {"type": "integer"}}}

    async def get_collect(request, _q):
        return json_response(collector.status())

    async def post_collect(request, b: CollectBody):
        collector.enabled = b.on
        log.info("encoder frame collection %s (%s)", "on" if b.on else "off", collector.folder)
        return json_response(collector.status())

    return [
        Route("GET", "/encoder/collect", get_collect, "labelled IR frame collection: state and count",
              answer_schema=schema, tag="encoder"),
        Route("POST", "/encoder/collect", post_collect, "switch labelled IR frame collection on or off",
              body=CollectBody, answer_schema=schema, errors={**COMMAND_ERRORS}, tag="encoder"),
    ]
