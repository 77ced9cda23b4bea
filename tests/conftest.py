"""Shared fixtures: offline rules, the project's real test data (tests/data), a fake clock."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("GPIOZERO_PIN_FACTORY", "mock")

from tenmon.core import offline  # noqa: E402
from tenmon.core.clock import FakeClock  # noqa: E402
from tenmon.daemon.control_loop import tick_once  # noqa: E402

offline.configure()

TEST_DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def test_data() -> Path:
    """``tests/data``: small real files carried by the project (see its PROVENANCE.md)."""
    return TEST_DATA


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


class SimRig:
    """A simulated observatory in-process on a FakeClock: ``run(s)`` ticks ``s`` simulated seconds."""

    def __init__(self, obs):
        self.obs = obs
        self.clock = obs.clock
        self.world = obs.world
        self.tick_s = obs.config.daemon.tick_s

    def run(self, seconds: float, until=None) -> float:
        """Tick for up to ``seconds``; stop early when ``until()`` is true. Returns seconds run."""
        n = int(round(seconds / self.tick_s))
        for i in range(n):
            self.clock.advance(self.tick_s)
            tick_once(self.obs)
            if until is not None and until():
                return (i + 1) * self.tick_s
        return n * self.tick_s

    def events(self, **kw):
        return self.obs.store.events(limit=10000, **kw)

    def messages(self) -> list[str]:
        return [e["message"] for e in self.events()]

    def api_token(self) -> str:
        """The API token (made by ``build_app``) as the CLI finds it: the rig's data directory
        given as TENMON_PATHS__DATA_DIR, as for the daemon."""
        from tenmon.cli.client import resolve_token

        token = resolve_token(env={"TENMON_PATHS__DATA_DIR": str(self.obs.config.paths.data_dir)})
        assert token.value, f"no API token at {token.where} (build the app first)"
        return token.value

    def api_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_token()}"}


@pytest.fixture
def sim_rig(tmp_path):
    """Factory: ``sim_rig(**env_overrides)`` -> a started :class:`SimRig` (fresh world, own dir)."""
    from tenmon.config.loader import load_config, simulated_config_path
    from tenmon.daemon.compose import build_observatory

    made = []

    def make(start=True, **env):
        env = {"TENMON_PATHS__DATA_DIR": str(tmp_path / f"sim{len(made)}"),
               # a fixed night, so no test depends on today's date
               "TENMON_SIM__START_UTC": '"2026-11-21T13:00:00Z"', **env}
        cfg = load_config(simulated_config_path(), env=env)
        obs = build_observatory(cfg, fresh=True)
        made.append(obs)
        if start:
            obs.start()
        rig = SimRig(obs)
        if start:
            rig.run(4.0)  # first readings and the start-up reconcile
        return rig

    yield make
    for obs in made:
        try:
            obs.stop()
        except Exception:  # noqa: BLE001 - teardown of an already-stopped rig
            pass
        obs.store.close(timeout_s=2.0)
