"""Pydantic models of the site TOML file: every key, its type, its unit and its one default."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tenmon.config.services import (ArchiveHookSettings, AutofocusSettings, CameraSettings,
                                    CentringServiceSettings, DomeGeometry, FrameWorkerSettings,
                                    NayutaDaemonSettings, NightSettings, SchedulerSettings)
from tenmon.config.vision import PipelineSettings, SolverSettings


class _Model(BaseModel):
    """Base: unknown keys are errors, assignments are validated, every number is finite.

    ``allow_inf_nan=False``: ``inf`` and ``nan`` (which TOML can spell) are refused for every
    float of the site file, so no limit can be switched off by an infinity
    (``max_wind_ms = inf`` would make every wind safe, ``weather_stale_s = inf`` every reading
    fresh) and no NaN can compare false against everything.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


# --------------------------------------------------------------------------- site, paths, api


class SiteConfig(_Model):
    name: str = "site"
    latitude_deg: float = Field(ge=-90, le=90)
    longitude_deg: float = Field(ge=-180, le=360, description="east positive")
    elevation_m: float = Field(ge=-500, le=9000)


class PathsConfig(_Model):
    data_dir: Path = Path("/var/lib/tenmon")
    products_dir: Path | None = Field(
        default=None, description="frame products; default <data_dir>/products"
    )
    frames_dir: Path | None = Field(default=None, description="where the CCD software writes frames")
    calibration_dir: Path | None = None

    @property
    def database(self) -> Path:
        return self.data_dir / "tenmon.sqlite"

    @property
    def products(self) -> Path:
        return self.products_dir or (self.data_dir / "products")


#: Bind addresses that only this machine can reach.
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


def is_loopback_host(host: str) -> bool:
    """``host`` (a bind address or name) reaches this machine only: 127.0.0.0/8, ::1, localhost."""
    import ipaddress

    h = host.strip().strip("[]").lower().rstrip(".")
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


class ApiConfig(_Model):
    """The daemon's HTTP API. Commands always need the API token (``Authorization: Bearer``).

    The token is, in this order: the environment variable named by ``token_env``; the file
    ``token_file``; else ``<data_dir>/api.token``, created (mode 0600) at the first start. A bind
    that other machines can reach (``host`` not 127.0.0.1, ::1 or localhost) must name its token
    (``token_file`` or ``token_env``): remote access is then a deliberate choice, and reads need
    the token too.
    """

    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=8470, ge=1, le=65535)
    token_file: Path | None = Field(
        default=None, description="file holding the API token; created (0600) when missing; "
        "default <data_dir>/api.token")
    token_env: str | None = Field(
        default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="name of an environment variable holding the API token (e.g. from a "
        "systemd EnvironmentFile or credential); wins over token_file")
    allowed_hosts: list[str] = Field(
        default_factory=list, description="extra host names clients may use to reach the API "
        "(Host and Origin headers), e.g. the Pi's name on the LAN; the bind address, localhost, "
        "127.0.0.1 and [::1] are always allowed")
    audit_keep_days: float = Field(default=365.0, gt=0, le=36500,
                                   description="audit rows (who commanded what) older than this "
                                   "are pruned")

    @field_validator("allowed_hosts")
    @classmethod
    def _plain_names(cls, v: list[str]) -> list[str]:
        out = []
        for name in v:
            n = name.strip().lower().rstrip(".")
            if not n or any(c in n for c in "/ @?#") or "://" in n:
                raise ValueError(f"{name!r} is not a host name (give a name or address, without "
                                 "scheme, port or path)")
            out.append(n)
        return out

    @property
    def loopback(self) -> bool:
        """Only this machine can reach the API."""
        return is_loopback_host(self.host)


class AlpacaConfig(_Model):
    """The ASCOM Alpaca server (``[alpaca]``, docs/alpaca.md): the dome, the mirror cover, the
    safety verdict and the weather for NINA, ACP, Voyager, KStars/Ekos and other Alpaca clients.

    Reads (GET) are open to every client that can reach ``host:port``. Commands (PUT, except
    Connect/Disconnect, which move nothing) need a client address in ``command_from`` and, when
    ``username`` is set, HTTP basic auth with that user and the password from ``password_env``
    or ``password_file``. Safety stays in charge whoever commands: an open while unsafe is
    refused, a close is always taken.
    """

    enabled: bool = Field(default=False, description="serve the Alpaca API and discovery")
    host: str = Field(default="127.0.0.1", min_length=1,
                      description="bind address; 0.0.0.0 to serve the LAN")
    port: int = Field(default=11111, ge=1, le=65535, description="Alpaca HTTP port")
    discovery: bool = Field(default=True, description="answer Alpaca discovery (UDP broadcast "
                            "'alpacadiscovery1') with the Alpaca port")
    discovery_port: int = Field(default=32227, ge=1, le=65535,
                                description="UDP port of Alpaca discovery (the standard's 32227)")
    connect_required: bool = Field(
        default=True, description="as the standard says, a client must Connect before it "
        "reads or commands (else NotConnected, and IsSafe false); false serves clients that "
        "never connect (some INDI Alpaca drivers)")
    command_from: list[str] = Field(
        default_factory=lambda: ["127.0.0.1", "::1"],
        description="client addresses or networks (CIDR, e.g. 192.168.1.0/24) allowed to "
        "command; reads are open")
    username: str | None = Field(default=None, min_length=1, max_length=100,
                                 description="HTTP basic auth user commands need (none: the "
                                 "address list alone decides)")
    password_env: str | None = Field(
        default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="environment variable holding the basic-auth password (wins over "
        "password_file)")
    password_file: Path | None = Field(default=None,
                                       description="file holding the basic-auth password")

    @field_validator("command_from")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        import ipaddress

        for item in v:
            try:
                ipaddress.ip_network(item.strip(), strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an address or network (e.g. 192.168.1.20 or "
                                 "192.168.1.0/24)") from None
        return [item.strip() for item in v]

    @model_validator(mode="after")
    def _auth_complete(self):
        has_password = self.password_env is not None or self.password_file is not None
        if self.username is not None and not has_password:
            raise ValueError("username needs password_env or password_file")
        if self.username is None and has_password:
            raise ValueError("password_env / password_file need a username")
        return self

    @property
    def loopback(self) -> bool:
        return is_loopback_host(self.host)


class SafetyConfig(_Model):
    """Limits of the safety supervisor. Missing or stale readings are always unsafe."""

    weather_stale_s: float = Field(default=120.0, gt=0)
    encoder_stale_s: float = Field(
        default=10.0, gt=0, description="no trusted encoder reading this long: encoder lost"
    )
    encoder_min_confidence: float = Field(default=0.3, ge=0, le=1)
    max_wind_ms: float = Field(default=15.0, gt=0)
    max_humidity_pct: float = Field(default=90.0, gt=0, le=100)
    sun_max_alt_deg: float = Field(default=-6.0, ge=-18, le=10, description="open only below this")
    close_retries: int = Field(default=2, ge=0, le=10, description="quick retries of the safe "
                               "state (each after travel time + margin) before the alarm")
    retry_every_s: float = Field(
        default=60.0, gt=0, le=3600, description="after the retries (and the alarm), try the safe "
        "state again this often while it is not reached; a close that ended 'closed, not "
        "verified' counts as not reached")
    verify_margin_s: float = Field(default=5.0, ge=0, description="added to travel times")
    reopen_after_s: float = Field(
        default=600.0, ge=0, le=86400, description="after any unsafe condition (daylight aside), "
        "every open (operator, sequencer, API) waits until it has been safe this long; kept "
        "across restarts")
    uncommanded_dome_deg: float = Field(
        default=2.0, gt=0, le=90, description="the dome turning this far while no motion is "
        "commanded (after its coast) is an actuator fault: alarm and unsafe")
    uncommanded_slit_fraction: float = Field(
        default=0.08, gt=0, lt=1, description="the shutter moving this far (fraction of its "
        "travel) while no motion is commanded is an actuator fault: alarm and unsafe")
    fault_clear_s: float = Field(
        default=30.0, gt=0, le=3600, description="an actuator fault clears by itself once its "
        "motion has stopped (or the relay read-back agrees) for this long; `tenmon resume` "
        "clears it at once")


class DaemonConfig(_Model):
    tick_s: float = Field(default=0.1, gt=0, le=1.0, description="control-loop period")
    shutdown_timeout_s: float = Field(default=150.0, gt=0)
    watchdog: bool = True
    history_interval_s: float = Field(default=10.0, gt=0)
    history_keep_days: float = Field(
        default=90.0, gt=0, allow_inf_nan=False,
        description="device state history older than this is pruned daily"
    )


class AlertsConfig(_Model):
    """Who is told when something needs a person: apprise URLs, which events, how often.

    Alerted: every event at ``min_level`` or above (alarms: safe state not reached, storage
    failure, sensor lost, ...), and an unclean restart whatever ``min_level`` says. Delivery runs
    on its own threads, so a slow or dead notification server never delays the control loop.
    """

    urls: list[str] = Field(
        default_factory=list,
        description="apprise URLs, one per target (mailtos://, ntfys://, tgram://, json://, ...); "
                    "they may hold passwords: keep the file mode 0640")
    min_level: Literal["warning", "error", "alarm"] = Field(
        default="alarm", description="lowest event level that is sent")
    rate_limit_min: float = Field(
        default=15.0, ge=0, le=1440,
        description="at most one message per kind of alert in this many minutes; the ones held "
                    "back are counted and sent as one digest when the time is up (0: no limit)")
    site_name: str | None = Field(
        default=None, description="name in every message's title; default [site] name")
    timeout_s: float = Field(default=10.0, gt=0, le=300,
                             description="connect and read timeout of one delivery attempt")
    retries: int = Field(default=3, ge=0, le=20,
                         description="further attempts after a failed delivery")
    retry_delay_s: float = Field(default=30.0, ge=0, le=3600,
                                 description="wait before the first retry; doubled each time")
    queue_size: int = Field(default=200, ge=1, le=100000,
                            description="alerts waiting per target before the oldest is dropped")


class HeartbeatConfig(_Model):
    """A GPIO output the control loop toggles while it is healthy, for an external dead-man
    relay (docs/install.md): when the pulses stop, that relay closes the slit by itself."""

    pin: int = Field(ge=0, le=53, description="BCM GPIO number of the heartbeat output")
    period_s: float = Field(
        default=0.5, gt=0, le=60,
        description="the output changes level every period_s (a square wave of 2 * period_s); "
                    "set the external relay's timeout to several periods (e.g. 5 s for 0.5 s)")
    active_high: bool = Field(default=True, description="false: the output idles high")
    stop_when_close_fails: bool = Field(
        default=True,
        description="stop the pulses while the safe state cannot be reached (after the "
                    "supervisor's retries), so that the external relay closes the slit")


class StorageConfig(_Model):
    """How the daemon records (``[storage]``): the database never holds up the control loop.

    Every write goes through one writer thread. While the database cannot be written (disk full,
    read-only, locked, corrupt, gone) rows wait in a bounded buffer in memory (every event is in
    the journal too), the writer retries with back-off and an alarm is raised; rows are written
    in order when the database works again. docs/storage.md tells the whole story.
    """

    buffer_max_rows: int = Field(
        default=5000, ge=100, le=1_000_000,
        description="rows kept in memory while the database cannot be written; beyond it the "
        "oldest device-history and info rows go first, alarms and frame rows last")
    retry_min_s: float = Field(default=0.5, gt=0, le=60, allow_inf_nan=False,
                               description="first retry after a failed write (then doubled)")
    retry_max_s: float = Field(default=30.0, gt=0, le=3600, allow_inf_nan=False,
                               description="longest wait between retries")
    write_busy_timeout_s: float = Field(
        default=5.0, gt=0, le=60, allow_inf_nan=False,
        description="the writer thread waits this long for a lock another process holds")
    open_wait_s: float = Field(
        default=2.0, gt=0, le=60, allow_inf_nan=False,
        description="at start, wait this long for the database to open; after it the daemon "
        "starts with its record in memory and keeps trying")
    stop_flush_s: float = Field(
        default=5.0, ge=0, le=300, allow_inf_nan=False,
        description="at stop, wait this long for buffered rows to be written")
    max_read_rows: int = Field(default=10000, ge=1, le=1_000_000,
                               description="hard cap on the rows one read returns")
    events_keep_days: float = Field(
        default=365.0, gt=0, le=36500, allow_inf_nan=False,
        description="events older than this are pruned daily")
    low_space_keep_days: float = Field(
        default=7.0, gt=0, le=36500, allow_inf_nan=False,
        description="below warn_free_mb, info events and device history older than this go too")
    prune_batch_rows: int = Field(default=500, ge=10, le=100000,
                                  description="rows deleted per writer transaction")
    check_interval_s: float = Field(
        default=10.0, gt=0, le=3600, allow_inf_nan=False,
        description="free space of the data, frames and products directories checked this often")
    warn_free_mb: float = Field(
        default=2048.0, gt=0, allow_inf_nan=False,
        description="below this free space (MB) on a watched directory: alarm and prune")
    refuse_free_mb: float = Field(
        default=512.0, gt=0, allow_inf_nan=False,
        description="below this free space (MB): new exposures are refused")

    @model_validator(mode="after")
    def _check_limits(self):
        if self.refuse_free_mb >= self.warn_free_mb:
            raise ValueError(f"refuse_free_mb ({self.refuse_free_mb:g}) must be below "
                             f"warn_free_mb ({self.warn_free_mb:g})")
        if self.retry_min_s > self.retry_max_s:
            raise ValueError(f"retry_min_s ({self.retry_min_s:g}) must not exceed retry_max_s "
                             f"({self.retry_max_s:g})")
        return self


# --------------------------------------------------------------------------- relay banks


class _RelayBankBase(_Model):
    channels: int = Field(default=8, ge=1, le=32)
    max_on_s: float = Field(default=300.0, gt=0, description="default maximum on-time per relay")
    max_on_s_per_channel: dict[int, float] = Field(default_factory=dict)
    interlocks: list[tuple[int, int]] = Field(
        default_factory=list, description="pairs of channels never on together (1-based)"
    )

    @model_validator(mode="after")
    def _check_channels(self):
        for a, b in self.interlocks:
            for ch in (a, b):
                if not 1 <= ch <= self.channels:
                    raise ValueError(f"interlock channel {ch} is outside 1..{self.channels}")
            if a == b:
                raise ValueError(f"interlock pair ({a}, {b}) names one channel twice")
        for ch, limit in self.max_on_s_per_channel.items():
            if not 1 <= ch <= self.channels:
                raise ValueError(f"max_on_s_per_channel: channel {ch} is outside 1..{self.channels}")
            if limit <= 0:
                raise ValueError(f"max_on_s_per_channel: channel {ch} limit must be > 0")
        return self

    def max_on_for(self, channel: int) -> float:
        return self.max_on_s_per_channel.get(channel, self.max_on_s)


class LcusSerialRelayConfig(_RelayBankBase):
    """CH340 "LCUS" serial USB relay board: frames ``A0 <channel> <state> <checksum>``."""

    type: Literal["lcus-serial"]
    port: str
    baudrate: int = 9600
    reconnect_s: float = Field(default=5.0, gt=0)


class GpioRelayConfig(_RelayBankBase):
    """Relays on GPIO pins through gpiozero (BCM numbering); ``pins[i]`` drives channel i+1."""

    type: Literal["gpio"]
    pins: list[int]
    active_high: bool = True

    @model_validator(mode="after")
    def _pins_match(self):
        if len(self.pins) != self.channels:
            raise ValueError(f"pins lists {len(self.pins)} pins but channels = {self.channels}")
        return self


class HidRelayConfig(_RelayBankBase):
    """USB HID relay board (dcttech "USBRelayN" type) through hidapi."""

    type: Literal["usb-hid"]
    serial: str | None = Field(default=None, description="board serial; first board when omitted")


class SimulatedRelayConfig(_RelayBankBase):
    type: Literal["simulated"]
    readback: bool = Field(
        default=True, description="the simulated board reports its contacts' physical state "
        "(false: a write-only board such as the LCUS ones; only the encoder then tells a "
        "welded contact)")


RelayBankConfig = Annotated[
    Union[LcusSerialRelayConfig, GpioRelayConfig, HidRelayConfig, SimulatedRelayConfig],
    Field(discriminator="type"),
]


# --------------------------------------------------------------------------- network devices
# Devices behind a standard server: ASCOM Alpaca (HTTP) and INDI (indiserver). Each device kind's
# union below has one member per backend: ``type = "alpaca"`` here, ``type = "indi"`` beside it.


def _host_port(value: str, *, default_port: int | None = None) -> str:
    """``host:port`` (or ``[v6]:port``) checked for shape; returns it stripped."""
    v = value.strip()
    if "://" in v or "/" in v or not v:
        raise ValueError(f"{value!r} is not host:port (no scheme, no path)")
    host, sep, port = v.rpartition(":")
    if not sep or "]" in port:
        if default_port is None:
            raise ValueError(f"{value!r} names no port (host:port, e.g. 192.168.1.20:11111)")
        return f"{v}:{default_port}"
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not host:port with a port in 1..65535")
    return v


class _AlpacaDevice(_Model):
    """One device of an ASCOM Alpaca server (``tenmon devices discover`` prints these lines).

    ``address`` is the server's ``host:port`` (the Alpaca default port is 11111);
    ``device_number`` the device's number of its kind on that server. Every HTTP call is bounded
    by ``timeout_s``; a server that does not answer is a device error naming the address.
    """

    type: Literal["alpaca"]
    address: str = Field(description="the Alpaca server, host:port (default port 11111)")
    device_number: int = Field(default=0, ge=0, le=99)
    timeout_s: float = Field(default=5.0, gt=0, le=120, description="bound on one HTTP call")
    connect_timeout_s: float = Field(default=10.0, gt=0, le=300,
                                     description="bound on connecting at start")
    poll_s: float = Field(default=1.0, gt=0, le=60, description="status is read this often")

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        return _host_port(v, default_port=11111)


# ----------------------------------------------------------------------- INDI devices (issue 14)
# One block for every ``type = "indi"`` device (docs/devices_indi.md); the unions below name
# them beside the Alpaca ones.


class _IndiDeviceConfig(_Model):
    """A device of an indiserver: where the server is and the device's INDI name."""

    type: Literal["indi"]
    host: str = Field(default="127.0.0.1", min_length=1, description="indiserver host")
    port: int = Field(default=7624, ge=1, le=65535, description="indiserver port")
    device: str = Field(min_length=1, description="the INDI device name, as `tenmon devices "
                        "discover --indi HOST:PORT` lists it (e.g. 'CCD Simulator')")
    connect_timeout_s: float = Field(default=15.0, gt=0, description="server, device and its "
                                     "properties must answer within this (wall seconds)")
    reply_timeout_s: float = Field(default=30.0, gt=0, description="a setting (binning, cooler, "
                                   "tracking...) must be acknowledged within this")

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        h = v.strip()
        if not h or "://" in h or "/" in h or any(c.isspace() for c in h):
            raise ValueError(f"{v!r} is not a host name or address (no scheme, no path)")
        if h.count(":") == 1:
            raise ValueError(f"{v!r}: give the port as port = N, not in host")
        return h

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("the INDI device name is empty")
        return v


class IndiCameraConfig(_IndiDeviceConfig):
    readout_timeout_s: float = Field(default=60.0, gt=0, description="the frame must arrive "
                                     "this long after the exposure ends, or the camera errs")
    binning: int | None = Field(default=None, ge=1, le=16, description="set at connect; None "
                                "keeps the device's")
    cooler_setpoint_c: float | None = Field(default=None, ge=-100, le=50,
                                            description="CCD temperature to hold; None: cooler "
                                                        "left as it is")


class IndiMountConfig(_IndiDeviceConfig):
    slew_timeout_s: float = Field(default=300.0, gt=0, description="a slew or park must end "
                                  "within this, or the mount is stopped and errs")
    min_alt_deg: float = Field(default=10.0, ge=-10, le=80, description="limit: a goto below "
                               "this altitude is refused; tracking below it is stopped")
    max_hour_angle_deg: float | None = Field(default=None, gt=0, le=180, description="limit: "
                                             "a goto further from the meridian is refused")


class IndiFocuserConfig(_IndiDeviceConfig):
    move_timeout_s: float = Field(default=120.0, gt=0)


class IndiFilterWheelConfig(_IndiDeviceConfig):
    move_timeout_s: float = Field(default=60.0, gt=0)


class IndiWeatherConfig(_IndiDeviceConfig):
    stale_s: float = Field(default=180.0, gt=0, description="parameters not refreshed by the "
                           "station for this long are stale (unsafe)")
    update_period_s: float | None = Field(default=30.0, gt=0, description="WEATHER_UPDATE "
                                          "period set at connect; None keeps the station's")


# --------------------------------------------------------------------------- motion devices


class RelayPair(_Model):
    relays: str = Field(description="name of a relay bank in [relays]")


class DomeConfig(RelayPair):
    """Dome rotation by a CW/CCW relay pair, closed-loop on the encoder's azimuth."""

    type: Literal["relay"] = "relay"
    cw_channel: int = Field(ge=1)
    ccw_channel: int = Field(ge=1)
    dead_band_deg: float = Field(default=0.5, gt=0, le=10)
    slew_timeout_s: float = Field(default=240.0, gt=0)
    stall_window_s: float = Field(default=4.0, gt=0, description="motor on this long must move")
    stall_min_deg: float = Field(default=0.5, gt=0)
    coast_initial_s: float = Field(
        default=1.0, ge=0, description="first guess of coast distance / speed; learned after"
    )
    speed_initial_deg_s: float = Field(
        default=3.0, gt=0, le=20, description="first guess of full rotation speed; learned after"
    )
    spinup_s: float = Field(
        default=1.5, gt=0, le=20, description="time constant of the motor's spin-up"
    )
    reverse_delay_s: float = Field(default=1.0, ge=0)
    max_corrections: int = Field(default=3, ge=0)
    home_azimuth_deg: float = Field(default=0.0, ge=0, lt=360)
    park_azimuth_deg: float = Field(default=180.0, ge=0, lt=360)

    @model_validator(mode="after")
    def _distinct(self):
        if self.cw_channel == self.ccw_channel:
            raise ValueError("cw_channel and ccw_channel must differ")
        return self


class SlitConfig(RelayPair):
    type: Literal["relay"] = "relay"
    open_channel: int = Field(ge=1)
    close_channel: int = Field(ge=1)
    travel_time_s: float = Field(default=60.0, gt=0, description="full travel, closed to open")
    margin_s: float = Field(default=15.0, ge=0, description="added to travel time for timeouts")
    # After the readings say "closed" (three in a row) or "open" (two) the motor keeps running to
    # the end stop: a reading is noisy (the simulated encoder's sd is 0.01 of the travel), and a
    # slit stopped right at the threshold can be left a few % open. Closed must mean closed.
    close_overrun_s: float = Field(default=2.5, ge=0, description="keep closing after 'closed'")
    open_overrun_s: float = Field(
        default=3.0, ge=0, description="keep opening after 'open', to the end stop, so that "
        "encoder noise near the open threshold does not read as partly open")
    open_threshold: float = Field(default=0.98, gt=0.5, le=1.0)
    closed_threshold: float = Field(default=0.02, ge=0, lt=0.5)

    @model_validator(mode="after")
    def _distinct(self):
        if self.open_channel == self.close_channel:
            raise ValueError("open_channel and close_channel must differ")
        return self


class CoverLimitSwitches(_Model):
    """gpiozero inputs that say the cover is fully open / fully closed."""

    open_pin: int
    closed_pin: int
    pull_up: bool = True


class CoverConfig(RelayPair):
    type: Literal["relay"] = "relay"
    open_channel: int = Field(ge=1)
    close_channel: int = Field(ge=1)
    travel_time_s: float = Field(default=20.0, gt=0)
    margin_s: float = Field(default=10.0, ge=0)
    limit_switches: CoverLimitSwitches | None = None

    @model_validator(mode="after")
    def _distinct(self):
        if self.open_channel == self.close_channel:
            raise ValueError("open_channel and close_channel must differ")
        return self


class Lx200MountConfig(_Model):
    type: Literal["lx200"]
    port: str
    baudrate: int = 9600
    dialect: Literal["auto", "meade", "onstep"] = Field(
        default="auto", description="tracking/park commands: auto asks :GVP# at connect"
    )
    timeout_s: float = Field(default=2.0, gt=0, description="serial reply timeout")
    slew_timeout_s: float = Field(default=300.0, gt=0)
    park_alt_deg: float = Field(default=0.0, ge=-90, le=90)
    park_az_deg: float = Field(default=0.0, ge=0, lt=360)


class SimulatedMountConfig(_Model):
    type: Literal["simulated"]
    slew_rate_deg_s: float = Field(default=4.0, gt=0)
    slew_timeout_s: float = Field(default=300.0, gt=0)
    park_ha_deg: float = Field(default=0.0, ge=-180, le=180, description="park hour angle")
    park_dec_deg: float = Field(default=0.0, ge=-90, le=90, description="park declination")
    pointing_error_arcmin: float = Field(default=5.0, ge=0, description="scale of the error model")


class AlpacaMountConfig(_AlpacaDevice):
    """An ASCOM Alpaca Telescope (a mount behind an Alpaca server: ASCOM Remote, a vendor's
    server, alpaca-simulators)."""

    slew_timeout_s: float = Field(default=300.0, gt=0)
    park_timeout_s: float = Field(default=300.0, gt=0)
    min_altitude_deg: float = Field(default=10.0, ge=-10, le=80,
                                    description="refuse a goto below this altitude (limits)")


MountConfig = Annotated[Union[Lx200MountConfig, SimulatedMountConfig, AlpacaMountConfig,
                              IndiMountConfig], Field(discriminator="type")]


# --------------------------------------------------------------------------- sensors


class SimulatedEncoderConfig(_Model):
    type: Literal["simulated"]
    azimuth_noise_deg: float = Field(default=0.15, ge=0)
    fraction_noise: float = Field(default=0.01, ge=0)
    dropout_probability: float = Field(default=0.0, ge=0, le=1)
    rate_hz: float = Field(default=5.0, gt=0)


class IrCameraEncoderConfig(_Model):
    """The optical encoder at a site: IR camera + slit detector + tracker (docs/encoder.md)."""

    type: Literal["ir-camera"]
    device: str = Field(default="/dev/video0", description="V4L2 device, index, stream URL or "
                        "a directory of frames to replay")
    calibration: Path | None = Field(default=None, description="calibration JSON "
                                     "(`tenmon encoder calibrate`)")
    model: Path | None = Field(default=None, description="ONNX slit model; the packaged one when None")
    use_model: bool = True
    rate_hz: float = Field(default=5.0, gt=0, le=60)
    stale_s: float = Field(default=2.0, gt=0, description="an older reading is unknown")
    threads: int = Field(default=1, ge=1, le=8, description="onnxruntime intra-op threads")
    width_px: int | None = Field(default=None, gt=0)
    height_px: int | None = Field(default=None, gt=0)
    first_reading_timeout_s: float = Field(default=10.0, gt=0)
    reconnect_s: float = Field(default=2.0, gt=0)
    # site adaptation (docs/encoder.md, "Learning the site")
    model_dir: Path | None = Field(default=None, description="a site-adapted model folder "
                                   "(`tenmon encoder adapt --out DIR`); replaces model")
    collect: bool = Field(default=False, description="write labelled IR frames for "
                          "`tenmon encoder adapt` (also `tenmon encoder collect on`)")
    collect_dir: Path | None = Field(default=None, description="where collected frames go "
                                     "(default: DATA_DIR/encoder-labels)")
    collect_interval_s: float = Field(default=20.0, gt=0, description="at most one collected "
                                      "frame per this many seconds while nothing changes")


class SimulatedIrEncoderConfig(_Model):
    """The optical encoder in simulated mode: the simulated IR camera + the real detector and tracker.

    Times are in the simulated clock's seconds (the daemon's ``--speed`` does not change them).
    """

    type: Literal["simulated-ir"]
    rate_hz: float = Field(default=2.0, gt=0, le=30,
                           description="frames per simulated second (fewer when rendering cannot keep up)")
    stale_s: float = Field(default=3.0, gt=0,
                           description="a reading older than this (simulated s) is unknown")
    render_seed: int = Field(default=35, ge=0,
                             description="seeds the fixed simulated camera (lens, mounting, textures)")
    width_px: int = Field(default=320, ge=64, le=1920,
                          description="rendered frame width (320x240 renders in ~35 ms here)")
    height_px: int = Field(default=240, ge=64, le=1920, description="rendered frame height")
    model: Path | None = Field(default=None, description="ONNX slit model; the packaged one when None")
    use_model: bool = Field(default=True, description="false: the classical estimator only")
    threads: int = Field(default=1, ge=1, le=8, description="onnxruntime intra-op threads")
    tube: Literal["mount", "parked", "none"] = Field(
        default="mount", description="draw the telescope where the world's mount points, parked "
                                     "at the zenith, or not at all")
    dropout_occlusion: Literal["lights_off", "lens_covered", "blinded"] = Field(
        default="lights_off", description="what the world's encoder-dropout fault does to the view")
    max_lag_s: float = Field(
        default=1.0, ge=0,
        description="hold the simulation (update() waits, at most hold_limit_s wall s) while the "
                    "newest frame is older than this many simulated s; 0: never hold")
    hold_limit_s: float = Field(default=5.0, gt=0, description="longest hold per tick, wall s")
    first_reading_timeout_s: float = Field(
        default=10.0, gt=0, description="connect() waits this long (wall seconds) for a first reading")
    # site adaptation (docs/encoder.md, "Learning the site")
    model_dir: Path | None = Field(default=None, description="a site-adapted model folder "
                                   "(`tenmon encoder adapt --out DIR`); replaces model")
    collect: bool = Field(default=False, description="write labelled IR frames for "
                          "`tenmon encoder adapt` (also `tenmon encoder collect on`)")
    collect_dir: Path | None = Field(default=None, description="where collected frames go "
                                     "(default: DATA_DIR/encoder-labels)")
    collect_interval_s: float = Field(default=20.0, gt=0, description="at most one collected "
                                      "frame per this many seconds while nothing changes")


EncoderConfig = Annotated[
    Union[SimulatedEncoderConfig, IrCameraEncoderConfig, SimulatedIrEncoderConfig],
    Field(discriminator="type")
]


class GpioRainConfig(_Model):
    """A rain sensor's digital output on a GPIO pin (BCM numbering), optionally with a heartbeat.

    The wiring must fail safe: an open circuit (a cut cable, a pulled plug, a dead sensor) must
    read wet. The pin floats to its pull (high with ``pull_up``), so that is the case when
    ``wet_when_high == pull_up`` (e.g. a normally-closed contact to ground, closed while dry,
    with the pull-up: ``wet_when_high = true``, ``pull_up = true``). A wiring where an open
    circuit reads dry is refused unless a heartbeat input tells a lost sensor
    (docs/install.md shows both).
    """

    type: Literal["gpio-rain"]
    pin: int
    wet_when_high: bool = Field(description="the level the pin reads when wet (no default: "
                                "a guess here could read rain as dry)")
    pull_up: bool = True
    bounce_s: float = Field(default=0.5, ge=0)
    heartbeat_pin: int | None = Field(
        default=None, description="a heartbeat from the sensor: a pin it toggles while alive "
        "(heartbeat = 'toggle') or a 'sensor OK' line (heartbeat = 'ok-high' / 'ok-low')")
    heartbeat: Literal["toggle", "ok-high", "ok-low"] = "toggle"
    heartbeat_pull_up: bool = True
    heartbeat_timeout_s: float = Field(
        default=5.0, gt=0, le=3600, description="no edge (toggle) or no OK level for this long: "
        "the sensor is lost (its reading goes stale: unsafe and an alarm)")

    @model_validator(mode="after")
    def _fails_safe(self):
        if self.heartbeat_pin is not None and self.heartbeat_pin == self.pin:
            raise ValueError("heartbeat_pin must differ from pin")
        if self.wet_when_high != self.pull_up and self.heartbeat_pin is None:
            level = "high" if self.pull_up else "low"
            raise ValueError(
                f"a cut cable would read dry: an open circuit floats {level} (pull_up = "
                f"{str(self.pull_up).lower()}) and {level} means dry (wet_when_high = "
                f"{str(self.wet_when_high).lower()}). Wire the sensor to fail safe (e.g. a "
                "normally-closed contact to ground with wet_when_high = true, pull_up = true; or "
                "a wet-low output with pull_up = false) or add a heartbeat_pin")
        if self.heartbeat == "ok-high" and self.heartbeat_pin is not None \
                and self.heartbeat_pull_up:
            raise ValueError("heartbeat = 'ok-high' with heartbeat_pull_up = true reads a cut "
                             "cable as OK: use heartbeat_pull_up = false (or an 'ok-low' line)")
        if self.heartbeat == "ok-low" and self.heartbeat_pin is not None \
                and not self.heartbeat_pull_up:
            raise ValueError("heartbeat = 'ok-low' with heartbeat_pull_up = false reads a cut "
                             "cable as OK: use heartbeat_pull_up = true (or an 'ok-high' line)")
        return self


class SimulatedWeatherConfig(_Model):
    type: Literal["simulated"]


class AlpacaWeatherConfig(_AlpacaDevice):
    """Weather from an Alpaca ObservingConditions device and/or SafetyMonitor on one server.

    ``device_number`` is the ObservingConditions device (``observing_conditions = false``: none);
    ``safety_monitor`` the SafetyMonitor's number (``None``: none). A SafetyMonitor that says
    not safe is a weather alert (unsafe). Rain comes from ObservingConditions' RainRate; a site
    whose rain sensor feeds the SafetyMonitor instead says so with ``rain_from_safety_monitor``
    (rain is then read as "not IsSafe"). A reading is stale ``stale_after_s`` after the last
    successful poll; a failed poll never refreshes it.
    """

    observing_conditions: bool = Field(default=True, description="read ObservingConditions "
                                       "device_number")
    safety_monitor: int | None = Field(default=None, ge=0, le=99,
                                       description="SafetyMonitor device number")
    rain_from_safety_monitor: bool = False
    rain_threshold_mm_h: float = Field(default=0.0, ge=0, description="RainRate above this "
                                       "is rain")
    stale_after_s: float = Field(default=60.0, gt=0, le=3600)
    poll_s: float = Field(default=5.0, gt=0, le=600)

    @model_validator(mode="after")
    def _something(self):
        if not self.observing_conditions and self.safety_monitor is None:
            raise ValueError("name an ObservingConditions device (observing_conditions = true) "
                             "or a SafetyMonitor (safety_monitor = N)")
        if self.rain_from_safety_monitor and self.safety_monitor is None:
            raise ValueError("rain_from_safety_monitor needs safety_monitor = N")
        return self


WeatherConfig = Annotated[Union[GpioRainConfig, SimulatedWeatherConfig, AlpacaWeatherConfig,
                                IndiWeatherConfig], Field(discriminator="type")]


class DirectoryCcdConfig(_Model):
    """Frames written by the CCD software into ``paths.frames_dir``."""

    type: Literal["directory"]
    pattern: str = "*.fits"
    stable_s: float = Field(default=2.0, gt=0)


class SimulatedCcdConfig(_Model):
    type: Literal["simulated"]


class AlpacaCcdConfig(_AlpacaDevice):
    """An ASCOM Alpaca Camera: tenmon exposes, reads the ImageArray and writes the FITS frame
    into ``paths.frames_dir`` (``drivers/camera_fits.py``), where the frame service takes it.

    ``binning`` and ``subframe`` (x, y, width, height in binned pixels; ``None``: the whole
    chip) are set before each exposure. ``cooler_setpoint_c`` switches the cooler on at connect.
    An exposure that has not ended ``exposure_margin_s`` after its time (readout and download
    included) is aborted: a camera error, never a hang.
    """

    binning: int = Field(default=1, ge=1, le=16)
    subframe: tuple[int, int, int, int] | None = None
    cooler_setpoint_c: float | None = Field(default=None, ge=-80, le=40)
    gain: int | None = None
    exposure_margin_s: float = Field(default=120.0, gt=0, le=3600)
    download_timeout_s: float = Field(default=120.0, gt=0, le=3600,
                                      description="bound on the ImageArray download")
    poll_s: float = Field(default=0.5, gt=0, le=10)
    instrument: str | None = Field(default=None, description="INSTRUME card; default the "
                                   "camera's own name")


CcdConfig = Annotated[Union[DirectoryCcdConfig, SimulatedCcdConfig, AlpacaCcdConfig,
                            IndiCameraConfig], Field(discriminator="type")]


# --------------------------------------------------------------------------- focuser, filter wheel


class AlpacaFocuserConfig(_AlpacaDevice):
    """An ASCOM Alpaca Focuser (absolute)."""

    move_timeout_s: float = Field(default=120.0, gt=0)


FocuserConfig = Annotated[Union[AlpacaFocuserConfig, IndiFocuserConfig],
                          Field(discriminator="type")]


class AlpacaFilterWheelConfig(_AlpacaDevice):
    """An ASCOM Alpaca FilterWheel; filters are named as the wheel names them."""

    move_timeout_s: float = Field(default=60.0, gt=0)


FilterWheelConfig = Annotated[Union[AlpacaFilterWheelConfig, IndiFilterWheelConfig],
                              Field(discriminator="type")]

#: Device types that are neither simulated nor site-only: standard servers. A simulated
#: observatory may use them (their simulators: alpaca-simulators, indiserver's simulators).
NETWORK_TYPES = ("alpaca", "indi")


# --------------------------------------------------------------------------- simulation


class WeatherEvent(_Model):
    """A scripted weather change ``after_s`` seconds of simulated time after start."""

    after_s: float = Field(ge=0)
    condition: Literal["clear", "rain", "wind", "humid"]
    wind_ms: float = Field(default=0.0, ge=0)


class SimConfig(_Model):
    seed: int = 0
    speed: float = Field(default=1.0, gt=0, le=1000)
    start_utc: datetime | None = Field(
        default=None, description="simulated start; default 13:00 UTC today (22:00 JST: night)"
    )
    weather: Literal["scripted", "random"] = "scripted"
    weather_script: list[WeatherEvent] = Field(default_factory=list)
    dome_max_speed_deg_s: float = Field(default=3.0, gt=0)
    dome_spinup_s: float = Field(default=1.5, gt=0)
    dome_coast_s: float = Field(default=1.0, gt=0)
    slit_travel_s: float = Field(default=60.0, gt=0)
    cover_travel_s: float = Field(default=20.0, gt=0)

    @field_validator("start_utc")
    @classmethod
    def _aware(cls, v: datetime | None):
        if v is not None and v.tzinfo is None:
            v = v.replace(tzinfo=timezone.utc)
        return v

    def start(self) -> datetime:
        if self.start_utc is not None:
            return self.start_utc.astimezone(timezone.utc)
        today = datetime.now(timezone.utc).date()
        return datetime(today.year, today.month, today.day, 13, 0, tzinfo=timezone.utc)


# --------------------------------------------------------------------------- the whole file


class TenmonConfig(_Model):
    """The whole site file."""

    mode: Literal["site", "simulated"] = "site"
    site: SiteConfig
    paths: PathsConfig = Field(default_factory=PathsConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    alpaca: AlpacaConfig = Field(default_factory=AlpacaConfig)
    safety: SafetyConfig = Field(default_factory=SafetyConfig)
    daemon: DaemonConfig = Field(default_factory=DaemonConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    heartbeat: HeartbeatConfig | None = None
    storage: StorageConfig = Field(default_factory=StorageConfig)
    relays: dict[str, RelayBankConfig]
    dome: DomeConfig
    slit: SlitConfig
    cover: CoverConfig
    mount: MountConfig
    encoder: EncoderConfig
    weather: WeatherConfig
    ccd: CcdConfig | None = None
    focuser: FocuserConfig | None = None
    filter_wheel: FilterWheelConfig | None = None
    sim: SimConfig | None = None
    # Night operations, frames and astrometry (models in tenmon.config.services and
    # tenmon.config.vision). Absent: None, and the code using a section reads the model's
    # defaults through tenmon.config.sections.section().
    night: NightSettings | None = None
    scheduler: SchedulerSettings | None = None
    dome_geometry: DomeGeometry | None = None
    camera: CameraSettings | None = None
    frames: FrameWorkerSettings | None = None
    pipeline: PipelineSettings | None = None
    solver: SolverSettings | None = None
    centring: CentringServiceSettings | None = None
    nayuta: NayutaDaemonSettings | None = None
    archive: ArchiveHookSettings | None = None
    autofocus: AutofocusSettings | None = None


def wiring_problems(cfg: TenmonConfig) -> list[tuple[str, str]]:
    """Cross-checks between sections, as ``(key_path, message)`` pairs.

    Relay banks named by devices exist and have the channels; a channel drives one thing only;
    each motor pair is an interlock; each relay's maximum on-time allows the motion it drives;
    a simulated site uses simulated devices only (a site never falls back to a simulator).
    """
    problems: list[tuple[str, str]] = []
    if not cfg.api.loopback and cfg.api.token_file is None and cfg.api.token_env is None:
        problems.append(("api.host", f"{cfg.api.host!r} lets other machines reach the API: name "
                         "its token with api.token_file (or api.token_env), or bind to "
                         "127.0.0.1; without one any client on the network could command the "
                         "observatory"))
    problems.extend(_alpaca_problems(cfg))
    uses = [
        ("dome", cfg.dome.relays, ("cw_channel", cfg.dome.cw_channel),
         ("ccw_channel", cfg.dome.ccw_channel), cfg.dome.slew_timeout_s),
        ("slit", cfg.slit.relays, ("open_channel", cfg.slit.open_channel),
         ("close_channel", cfg.slit.close_channel), cfg.slit.travel_time_s + cfg.slit.margin_s),
        ("cover", cfg.cover.relays, ("open_channel", cfg.cover.open_channel),
         ("close_channel", cfg.cover.close_channel),
         cfg.cover.travel_time_s + cfg.cover.margin_s),
    ]
    taken: dict[tuple[str, int], str] = {}
    for dev, bank_name, (ka, a), (kb, b), needed_s in uses:
        bank = cfg.relays.get(bank_name)
        if bank is None:
            problems.append((f"{dev}.relays", f"names no relay bank {bank_name!r} in [relays]"))
            continue
        for key, ch in ((ka, a), (kb, b)):
            if ch > bank.channels:
                problems.append((f"{dev}.{key}", f"channel {ch} exceeds relays.{bank_name}.channels "
                                 f"= {bank.channels}"))
            if (bank_name, ch) in taken:
                problems.append((f"{dev}.{key}", f"channel {ch} of relays.{bank_name} is already "
                                 f"used by {taken[(bank_name, ch)]}"))
            taken[(bank_name, ch)] = f"{dev}.{key}"
            if bank.max_on_for(ch) < needed_s:
                problems.append((f"relays.{bank_name}.max_on_s",
                                 f"channel {ch} may stay on {bank.max_on_for(ch):g} s, shorter than "
                                 f"the {needed_s:g} s the {dev} motion may need"))
        if not any(set(p) == {a, b} for p in bank.interlocks):
            problems.append((f"relays.{bank_name}.interlocks",
                             f"must list [{a}, {b}] ({dev}): opposite directions must never be "
                             "on together"))
    if cfg.heartbeat is not None:
        if cfg.heartbeat.period_s < cfg.daemon.tick_s:
            problems.append(("heartbeat.period_s",
                             f"{cfg.heartbeat.period_s:g} s is shorter than the control tick "
                             f"(daemon.tick_s = {cfg.daemon.tick_s:g} s), which toggles it"))
        gpio: dict[int, str] = {}
        for n, b in cfg.relays.items():
            if isinstance(b, GpioRelayConfig):
                gpio.update({pin: f"relays.{n}.pins" for pin in b.pins})
        if isinstance(cfg.weather, GpioRainConfig):
            gpio[cfg.weather.pin] = "weather.pin"
        if cfg.cover.limit_switches is not None:
            gpio[cfg.cover.limit_switches.open_pin] = "cover.limit_switches.open_pin"
            gpio[cfg.cover.limit_switches.closed_pin] = "cover.limit_switches.closed_pin"
        if cfg.heartbeat.pin in gpio:
            problems.append(("heartbeat.pin", f"GPIO {cfg.heartbeat.pin} is already used by "
                             f"{gpio[cfg.heartbeat.pin]}"))
    if cfg.mode == "simulated":
        if cfg.sim is None:
            problems.append(("sim", "mode = 'simulated' needs a [sim] section"))
        kinds = {"mount.type": cfg.mount.type, "encoder.type": cfg.encoder.type,
                 "weather.type": cfg.weather.type,
                 **{f"relays.{n}.type": b.type for n, b in cfg.relays.items()}}
        for key, t in kinds.items():
            # a standard server's device (its simulator, in a simulated night) may take part
            if t in NETWORK_TYPES and key in ("mount.type", "weather.type"):
                continue
            if t not in ("simulated", "simulated-ir"):
                problems.append((key, f"mode = 'simulated' needs simulated devices, not {t!r}"))
    else:
        kinds = {"mount.type": cfg.mount.type, "encoder.type": cfg.encoder.type,
                 "weather.type": cfg.weather.type,
                 **({"ccd.type": cfg.ccd.type} if cfg.ccd else {}),
                 **{f"relays.{n}.type": b.type for n, b in cfg.relays.items()}}
        for key, t in kinds.items():
            if t in ("simulated", "simulated-ir"):
                problems.append((key, "a site (mode = 'site') must not use a simulated device; "
                                 "use mode = 'simulated' for a simulated observatory"))
    return problems


def _alpaca_problems(cfg: TenmonConfig) -> list[tuple[str, str]]:
    """``[alpaca]`` against the rest: a port of its own; no open door to commands."""
    import ipaddress

    a = cfg.alpaca
    if not a.enabled:
        return []
    problems: list[tuple[str, str]] = []
    if a.port == cfg.api.port:
        problems.append(("alpaca.port", f"{a.port} is the API's port (api.port): give the "
                         "Alpaca server a port of its own (the standard's default is 11111)"))
    if not a.loopback and a.username is None:
        for item in a.command_from:
            net = ipaddress.ip_network(item, strict=False)
            if net.prefixlen == 0:
                problems.append(("alpaca.command_from", f"{item!r} lets any machine that "
                                 "reaches the Alpaca port command the dome and cover: list "
                                 "the clients' addresses, or set alpaca.username (basic auth)"))
    return problems
