"""The composition root wires centring and Nayuta following: collaborators given, not looked up."""

from __future__ import annotations

from tenmon.daemon.compose import install_centring


def test_compose_gives_the_services_their_collaborators(rig):
    r = rig(open_dome=False)
    svc, seq = r.service, r.ops.sequencer
    assert svc.camera is r.ops.camera and svc.frames is r.ops.frames
    assert svc.sequencer is seq and svc.storage is r.obs.storage
    assert seq.storage is r.obs.storage
    assert seq.telescope_claims == [svc]  # no block starts while a centring job runs
    nay = svc.nayuta
    assert nay is not None and nay.world is r.obs.world
    assert nay.solver_settings is r.ops.frames.job.solver
    assert svc.tick in r.obs.tick_hooks and nay.tick in r.obs.tick_hooks
    assert {"centring", "nayuta"} <= set(r.obs.status_hooks)
    assert svc.on_frame in r.ops.frames.listeners and nay.on_frame in r.ops.frames.listeners
    assert install_centring(r.obs, r.ops) is svc  # idempotent
    assert seq.telescope_claims == [svc]
