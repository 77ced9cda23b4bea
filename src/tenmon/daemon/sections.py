"""The site file's sections whose models live with the code that uses them (night, frames, solver...).

``tenmon.config`` keeps these sections as plain tables (it imports nothing else of tenmon); this
module names their models, so that the loader can validate them with key-and-line messages
(``load_config(path, sections=section_models())``) and the daemon can read them as models
(:func:`tenmon.config.sections.section`, which the services import directly: this module imports
their models, so they must not import it).
"""

from __future__ import annotations

from pydantic import BaseModel

from tenmon.config.sections import section  # noqa: F401 - re-exported: the reader of one section


def section_models() -> dict[str, type[BaseModel]]:
    """Section name -> its pydantic model (imported here, on demand)."""
    from tenmon.archive.hook import ArchiveHookSettings
    from tenmon.daemon.autofocus import AutofocusSettings
    from tenmon.daemon.centring import CentringServiceSettings
    from tenmon.daemon.dome_geometry import DomeGeometry
    from tenmon.daemon.frame_worker import FrameWorkerSettings
    from tenmon.daemon.nayuta_service import NayutaDaemonSettings
    from tenmon.daemon.night import NightSettings
    from tenmon.drivers.camera import CameraSettings
    from tenmon.scheduler.settings import SchedulerSettings
    from tenmon.vision.pipeline import PipelineSettings
    from tenmon.vision.solve.chain import SolverSettings

    return {"night": NightSettings, "scheduler": SchedulerSettings, "dome_geometry": DomeGeometry,
            "camera": CameraSettings, "frames": FrameWorkerSettings,
            "pipeline": PipelineSettings, "solver": SolverSettings,
            "centring": CentringServiceSettings, "nayuta": NayutaDaemonSettings,
            "archive": ArchiveHookSettings, "autofocus": AutofocusSettings}
