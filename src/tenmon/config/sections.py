"""Reading one section of the site file as its model: the table given, else the config's, else
the model's defaults.

The models of these sections live with the code that uses them (night, frames, solver...);
``tenmon.daemon.sections`` names them for the loader. This reader needs none of them, so the
services import it without importing that list back (no circle).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from tenmon.errors import ConfigError


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
