"""The drivers registry: every device ``type`` the config models accept has an entry, and the
entries load the drivers the factories build."""

from __future__ import annotations

import typing

import pytest
from pydantic import BaseModel

from tenmon.config.models import TenmonConfig
from tenmon.daemon import device_factory
from tenmon.drivers import registry
from tenmon.core.errors import ConfigError


def _models(annotation) -> list[type[BaseModel]]:
    """Every pydantic model a field annotation admits (through unions, Optional, Annotated,
    dict values)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out = []
    for arg in typing.get_args(annotation):
        out += _models(arg)
    return out


def config_types() -> set[tuple[str, str]]:
    """(section, type) for every device section of the site file and every ``type`` it takes."""
    found = set()
    for section, field in TenmonConfig.model_fields.items():
        for model in _models(field.annotation):
            t = model.model_fields.get("type")
            if t is None:
                continue
            values = typing.get_args(t.annotation)
            assert values, f"{model.__name__}.type is not a Literal"
            found |= {(section, v) for v in values}
    return found


def test_every_config_type_has_a_registry_entry():
    accepted = config_types()
    # the device sections of the site file as they are today (a new one is seen here)
    assert {k for k, _ in accepted} >= {"relays", "dome", "slit", "cover", "mount", "encoder",
                                        "weather", "ccd", "focuser", "filter_wheel"}
    missing = sorted(accepted - set(registry.DRIVERS))
    assert not missing, f"config types without a driver in tenmon.drivers.registry: {missing}"


def test_network_backends_are_the_device_factorys():
    assert device_factory.BACKENDS is registry.BACKENDS
    for t in registry.BACKENDS:
        for kind in registry.NETWORK_BUILDERS:
            assert registry.driver(kind, t).network


@pytest.mark.parametrize("entry", [d for d in registry.DRIVERS.values()
                                   if not d.network or d.type == "alpaca"],
                         ids=lambda d: f"{d.kind}-{d.type}")
def test_each_entry_loads_a_driver(entry):
    assert callable(entry.load())


def test_the_classes_the_factories_build():
    from tenmon.drivers.dome import RelayDome
    from tenmon.drivers.mount.lx200 import Lx200Mount
    from tenmon.drivers.sim.devices import SimulatedMount
    from tenmon.drivers.sim.relays import SimulatedRelayBank

    assert registry.load("dome", "relay") is RelayDome
    assert registry.load("mount", "lx200") is Lx200Mount
    assert registry.load("mount", "simulated") is SimulatedMount
    assert registry.load("relays", "simulated") is SimulatedRelayBank


def test_unknown_type_is_a_config_error_listing_the_known():
    with pytest.raises(ConfigError, match=r"mount: no driver for type 'gem' \(known types: lx200, "
                                          r"simulated, alpaca, indi\)"):
        registry.driver("mount", "gem")
