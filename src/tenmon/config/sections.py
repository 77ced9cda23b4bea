"""Reading one section of the site file as its model: the table given, else the config's, else
the model's defaults.

The services' sections (night, frames, solver...) are optional in the file (``None`` when
absent); their models are in :mod:`tenmon.config.services` and :mod:`tenmon.config.vision`.
A caller may hand its own table or model (tests, ``tenmon simulate``), which is validated here.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from tenmon.core.errors import ConfigError


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
