"""tenmon: observatory automation daemon (dome, slit, cover, mount, slit encoder, frames, scheduler)."""

__version__ = "0.1.0"
