"""The site file's sections whose models live with the code that uses them (night, frames, solver...).

``tenmon.config`` keeps these sections as plain tables (it imports nothing else of tenmon); this
module names their models, so that the loader can validate them with key-and-line messages
(``load_config(path, sections=section_models())``) and the daemon can read them as models.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from tenmon.errors import ConfigError


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


def section(config: Any, name: str, model: type[BaseModel], given: Any = None) -> Any:
    """The settings of section ``name`` as ``model``: ``given`` (a model or a table) when not
    ``None``, else the config's table, else the model's defaults.

    Raises:
        ConfigError: the table does not validate (naming the section and the key).
    """
    value = given if given is not None else getattr(config, name, None)
    if value is None:
        return model()
    if isinstance(value, model):
        return value
    if isinstance(value, BaseModel):
        value = value.model_dump()
    try:
        return model.model_validate(value)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise ConfigError(f"[{name}]: {exc}") from None
