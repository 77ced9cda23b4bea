"""The daemon collects labelled IR frames ([encoder] collect) during a simulated night segment:
the simulated observatory with the IR encoder in the loop (relays -> world -> rendered frame ->
model), a homing, a full slit open and a dome rotation; the labels file must be valid and its
labels agree with the simulated world."""

from __future__ import annotations

import json
import time

from tenmon.daemon.control_loop import tick_once
from tenmon.core.astro import wrap180
from tenmon.config.loader import load_config, simulated_config_path
from tenmon.drivers.base import ShutterState
from tenmon.drivers.sim.ir_camera import SimulatedIrEncoderConfig
from tenmon.vision.slit.labels import read_labels

START = '"2026-11-21T13:00:00Z"'


def _run(obs, seconds, until=None, speed=10.0):
    tick = obs.config.daemon.tick_s
    next_wall = time.monotonic()
    for _ in range(int(round(seconds / tick))):
        obs.clock.advance(tick)
        tick_once(obs)
        if until is not None and until():
            return
        next_wall += tick / speed
        delay = next_wall - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def test_collect_writes_valid_labels_from_a_simulated_night_segment(tmp_path):
    from tenmon.daemon.compose import build_observatory

    env = {"TENMON_PATHS__DATA_DIR": str(tmp_path / "sim"), "TENMON_SIM__START_UTC": START,
           "TENMON_SAFETY__REOPEN_AFTER_S": "20"}
    cfg = load_config(simulated_config_path(), env=env)
    enc = SimulatedIrEncoderConfig(type="simulated-ir", collect=True, collect_dir=tmp_path / "labels",
                                   collect_interval_s=2.0)
    obs = build_observatory(cfg.model_copy(update={"encoder": enc}), fresh=True)
    truth = []  # (frame time, world azimuth, world fraction) sampled every tick
    obs.start()
    try:
        _run(obs, 3.0)
        obs.dome_goto(60.0)
        _run(obs, 240, until=lambda: not obs.dome.slewing)
        obs.dome_home()
        _run(obs, 240, until=lambda: not obs.dome.slewing)
        _run(obs, 5.0)
        obs.slit_open()
        _run(obs, 100, until=lambda: obs.slit.state != ShutterState.OPENING)
        _run(obs, 6.0)
        obs.dome_goto(20.0)
        _run(obs, 120, until=lambda: not obs.dome.slewing)
        _run(obs, 8.0)
        status = obs.status()
        truth.append((obs.world.state.dome_az_deg, obs.world.state.slit_fraction))
    finally:
        obs.stop()
    assert status["encoder_collect"]["enabled"] is True
    labels_path = tmp_path / "labels" / "labels.jsonl"
    labels = read_labels(labels_path)  # valid: every line parses, states and numbers in range
    assert len(labels) >= 5 and all(lab.image.is_file() for lab in labels)
    for line in labels_path.read_text().splitlines():
        assert set(json.loads(line)) >= {"image", "state", "open_fraction", "azimuth_deg"}
    states = [lab.state for lab in labels]
    assert "moving" in states and "open" in states  # the relay ran; after the full open
    # azimuths: only after the homing, and where the world was
    with_az = [lab for lab in labels if lab.azimuth_deg is not None]
    assert with_az
    last = labels[-1]
    assert last.state == "open" and last.azimuth_deg is not None
    assert abs(wrap180(last.azimuth_deg - truth[-1][0])) < 3.0, (last, truth[-1])
