"""The ASCOM Alpaca server: Device API v1 and Management API v1, on the daemon's event loop.

Served on ``[alpaca] host:port`` (default 127.0.0.1:11111), apart from the HTTP API:

* ``/api/v1/{device_type}/{device_number}/{member}``: the four devices of
  ``daemon.alpaca_devices`` (dome 0, covercalibrator 0, safetymonitor 0,
  observingconditions 0). GET parameters come in the query string, PUT parameters as a form
  body; parameter names are case-insensitive, URLs lower case. Every answer is the standard's
  JSON envelope: ``Value`` (reads), ``ClientTransactionID`` (the client's, 0 when it sent none
  or an invalid one), ``ServerTransactionID`` (1, 2, 3... per server), ``ErrorNumber`` and
  ``ErrorMessage``. ASCOM errors (NotImplemented 0x400, InvalidValue 0x401, ValueNotSet 0x402,
  NotConnected 0x407, InvalidOperation 0x40B, driver errors 0x500) are HTTP 200 with the
  number; a request that cannot be interpreted (unknown device or member, a missing or
  unparseable parameter, upper case in the URL) is HTTP 400 with a plain-text message, and an
  unexpected failure HTTP 500, as the standard says.
* ``/management/apiversions``, ``/management/v1/description``,
  ``/management/v1/configureddevices``, and the ``/setup`` pages.

Who may command: reads are open; a PUT other than Connect/Disconnect/Connected needs the
client's address in ``[alpaca] command_from`` (else InvalidOperation saying so) and, when
``[alpaca] username`` is set, HTTP basic auth (else HTTP 401 with a ``WWW-Authenticate``
challenge). Every PUT, refused or not, is written to the audit trail (``daemon.audit``, route
``alpaca /api/v1/...``), and every command is one of the observatory's methods, as for the HTTP
API. Handlers run on the event loop between control ticks and never wait on anything.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import logging
import os
import uuid
from urllib.parse import parse_qsl
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tenmon import __version__
from tenmon.config.models import AlpacaConfig
from tenmon.daemon.api.alpaca_devices import (DEVICE_CLASSES, NO_CONNECTION_NEEDED, NOT_CONNECTED,
                                          OPEN_PUTS, AlpacaDevice, AlpacaError, BadRequest, Call,
                                          INVALID_OPERATION, DRIVER_ERROR)
from tenmon.daemon.api.audit import AuditLog
from tenmon.daemon.observatory import Observatory

log = logging.getLogger(__name__)

#: Largest PUT body read (bytes): Alpaca forms are a few parameters.
MAX_FORM_BYTES = 16 * 1024
UINT32_MAX = 4294967295
#: daemon state key of the devices' UniqueIDs (made once, kept across restarts)
IDS_KEY = "alpaca_unique_ids"


@dataclass(frozen=True)
class Credentials:
    """The basic-auth user and password commands need (``None``: not required).
    ``problem`` says why a configured password could not be read (commands then refused)."""

    username: str | None = None
    password: str | None = None
    problem: str | None = None


def load_credentials(cfg: AlpacaConfig, env: dict[str, str] | None = None) -> Credentials:
    if cfg.username is None:
        return Credentials()
    env = dict(os.environ) if env is None else env
    if cfg.password_env is not None:
        value = env.get(cfg.password_env)
        if value:
            return Credentials(cfg.username, value)
        if cfg.password_file is None:
            return Credentials(cfg.username, None, f"[alpaca] password_env: the environment "
                               f"variable {cfg.password_env} is not set")
    try:
        text = cfg.password_file.read_text(encoding="utf-8").strip()  # type: ignore[union-attr]
    except OSError as exc:
        return Credentials(cfg.username, None, f"[alpaca] password_file {cfg.password_file}: "
                           f"{exc.strerror or exc}")
    if not text:
        return Credentials(cfg.username, None, f"[alpaca] password_file {cfg.password_file} "
                           "is empty")
    return Credentials(cfg.username, text)


class CommandRules:
    """Which clients may command: the address list, then basic auth when configured."""

    def __init__(self, cfg: AlpacaConfig, credentials: Credentials):
        self.networks = [ipaddress.ip_network(n, strict=False) for n in cfg.command_from]
        self.credentials = credentials

    def address_allowed(self, address: str | None) -> bool:
        try:
            ip = ipaddress.ip_address((address or "").split("%")[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.networks if net.version == ip.version)

    def auth(self, header: str | None) -> str:
        """``-`` (no auth configured), ``ok``, ``missing``, ``wrong`` or ``unavailable``."""
        cred = self.credentials
        if cred.username is None:
            return "-"
        if cred.password is None:
            return "unavailable"
        if not header or not header.lower().startswith("basic "):
            return "missing"
        try:
            user, _, password = base64.b64decode(header[6:].strip(), validate=True).decode(
                "utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return "wrong"
        ok_user = hmac.compare_digest(user.encode(), cred.username.encode())
        ok_pw = hmac.compare_digest(password.encode(), cred.password.encode())
        return "ok" if ok_user and ok_pw else "wrong"


def _uint32(text: str | None) -> int:
    """A transaction or client ID as sent, or 0 when absent or not a uint32."""
    if text is None:
        return 0
    t = text.strip()
    if not t.isdigit() or len(t) > 10:
        return 0
    v = int(t)
    return v if v <= UINT32_MAX else 0


def _first(params: dict[str, str], name: str) -> str | None:
    for k, v in params.items():
        if k.lower() == name.lower():
            return v
    return None


class AlpacaServer:
    """The Alpaca application for one observatory: devices, transactions, rules, audit."""

    def __init__(self, obs: Observatory, cfg: AlpacaConfig | None = None, *,
                 env: dict[str, str] | None = None):
        self.obs = obs
        self.cfg = cfg or obs.config.alpaca
        self.credentials = load_credentials(self.cfg, env)
        if self.credentials.problem:
            obs.emit("alarm", "alpaca", f"{self.credentials.problem}: Alpaca commands are "
                     "refused until this is fixed (reads and safety go on)")
        self.rules = CommandRules(self.cfg, self.credentials)
        self.audit = AuditLog(obs.store, obs.clock, obs.config.api.audit_keep_days)
        self._server_tid = 0
        ids = dict(obs.store.get_state(IDS_KEY, {}) or {})
        made = False
        self.devices: dict[tuple[str, int], AlpacaDevice] = {}
        for cls in DEVICE_CLASSES:
            if cls.device_type not in ids:
                ids[cls.device_type] = str(uuid.uuid4())
                made = True
            self.devices[(cls.device_type, 0)] = cls(obs, 0, ids[cls.device_type])
        if made:
            obs.store.set_state(IDS_KEY, ids)
        self._hooked = False

    # --------------------------------------------------------------- life cycle

    def install(self) -> None:
        """Run the devices' per-tick work (dome slaving) after every control tick."""
        if not self._hooked:
            self.obs.tick_hooks.append(self.tick)
            self._hooked = True

    def uninstall(self) -> None:
        if self._hooked:
            try:
                self.obs.tick_hooks.remove(self.tick)
            except ValueError:
                pass
            self._hooked = False

    def tick(self) -> None:
        for dev in self.devices.values():
            dev.tick()

    # --------------------------------------------------------------- envelope

    def next_tid(self) -> int:
        self._server_tid = self._server_tid % UINT32_MAX + 1
        return self._server_tid

    def envelope(self, client_tid: int, *, value: Any = None, has_value: bool = False,
                 number: int = 0, message: str = "") -> web.Response:
        body: dict[str, Any] = {}
        if has_value:
            body["Value"] = value
        body.update({"ClientTransactionID": client_tid, "ServerTransactionID": self.next_tid(),
                     "ErrorNumber": number, "ErrorMessage": message})
        return web.json_response(body)

    # --------------------------------------------------------------- device API

    async def device(self, request: web.Request) -> web.Response:
        path = request.path
        if path != path.lower():
            self.next_tid()
            return web.Response(status=400, text="Alpaca URLs are lower case: "
                                f"{path[:120]}")
        dtype = request.match_info["device_type"]
        member = request.match_info["member"]
        try:
            number = int(request.match_info["device_number"])
        except ValueError:
            number = -1
        put = request.method == "PUT"
        if put:
            raw = await request.read()
            ctype = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if raw and ctype not in ("application/x-www-form-urlencoded", ""):
                return await self._audited(request, raw, web.Response(
                    status=400, text="Alpaca PUT parameters are a form body "
                    "(application/x-www-form-urlencoded), not " + ctype[:60]), "bad_request",
                    "-")
            try:
                params = dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
            except (UnicodeDecodeError, ValueError) as exc:
                return await self._audited(request, raw, web.Response(
                    status=400, text=f"unreadable form body: {exc}"), "bad_request", "-")
        else:
            raw = b""
            params = dict(request.query.items())
        client_tid = _uint32(_first(params, "ClientTransactionID"))
        client = (request.remote or "?", _uint32(_first(params, "ClientID")))
        dev = self.devices.get((dtype, number))
        if dev is not None and not self.cfg.connect_required:
            client = ("*", 0)  # every client counts as connected
            dev._set_connected(client, True)
        if dev is None:
            self.next_tid()
            known = ", ".join(f"{t}/{n}" for t, n in self.devices)
            resp = web.Response(status=400, text=f"no such Alpaca device {dtype}/"
                                f"{request.match_info['device_number'][:12]} (devices here: "
                                f"{known})")
            return await self._audited(request, raw, resp, "not_found", "-") if put else resp
        fn = getattr(dev, f"{'put' if put else 'get'}_{member}", None)
        if fn is None:
            self.next_tid()
            other = getattr(dev, f"{'get' if put else 'put'}_{member}", None)
            text = (f"{dtype} has no member {member[:40]!r}" if other is None else
                    f"{dtype}/{member} is not a {request.method} member")
            resp = web.Response(status=400, text=text)
            return await self._audited(request, raw, resp, "not_found", "-") if put else resp
        if put and member not in OPEN_PUTS:
            refusal = self._command_refusal(request)
            if refusal is not None:
                kind, message, auth = refusal
                if kind == "unauthorized":
                    self.next_tid()
                    resp = web.Response(status=401, text=message, headers={
                        "WWW-Authenticate": 'Basic realm="tenmon alpaca"'})
                else:
                    resp = self.envelope(client_tid, number=INVALID_OPERATION, message=message)
                return await self._audited(request, raw, resp, kind, auth)
        auth = self._audit_auth(request) if put else "-"
        call = Call(params, client)
        code = "ok"
        try:
            if self.cfg.connect_required and member not in NO_CONNECTION_NEEDED \
                    and member != "issafe" and not dev.connected(client):
                raise AlpacaError(NOT_CONNECTED, f"{dev.type_name} is not connected: "
                                  "Connect (or set Connected true) first")
            value = fn(call)
            resp = self.envelope(client_tid, value=value, has_value=not put)
        except AlpacaError as exc:
            code = f"ascom_0x{exc.number:x}"
            resp = self.envelope(client_tid, number=exc.number, message=exc.message)
        except BadRequest as exc:
            self.next_tid()
            code = "bad_request"
            resp = web.Response(status=400, text=str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug answers 500; the loop lives on
            log.exception("Alpaca %s %s failed", request.method, path)
            self.next_tid()
            code = "internal"
            resp = web.Response(status=500, text=f"internal error ({type(exc).__name__})")
        if put:
            return await self._audited(request, raw, resp, code, auth)
        return resp

    def _audit_auth(self, request: web.Request) -> str:
        """The audit row's ``auth``: ``ok`` when the command rules let this client command (its
        address listed, basic auth right where required), else what failed (``-``: an address
        not listed). Only ``ok`` rows escape the audit's flood limit."""
        if not self.rules.address_allowed(request.remote):
            return "-"
        outcome = self.rules.auth(request.headers.get("Authorization"))
        return "ok" if outcome in ("-", "ok") else outcome

    def _command_refusal(self, request: web.Request) -> tuple[str, str, str] | None:
        """``None`` when the client may command; else (code, message, auth outcome)."""
        if not self.rules.address_allowed(request.remote):
            return ("forbidden", f"commands from {request.remote} are not allowed here "
                    "([alpaca] command_from); reads are open", "-")
        auth = self.rules.auth(request.headers.get("Authorization"))
        if auth == "unavailable":
            return ("no_password", f"commands are refused: {self.credentials.problem}", auth)
        if auth in ("missing", "wrong"):
            return ("unauthorized", "Alpaca commands need HTTP basic auth ("
                    + ("no" if auth == "missing" else "wrong") + " credentials); reads are "
                    "open", auth)
        return None

    async def _audited(self, request: web.Request, raw: bytes, resp: web.Response, code: str,
                       auth: str) -> web.Response:
        try:
            self.audit.record(client=request.remote, method=request.method,
                              route=f"alpaca {request.rel_url.path_qs}", body=raw,
                              status=resp.status, code=code, auth=auth)
        except Exception:  # noqa: BLE001 - the audit never undoes a command's answer
            log.exception("Alpaca audit record failed")
        return resp

    # --------------------------------------------------------------- management API

    def _mgmt(self, request: web.Request, value: Any) -> web.Response:
        tid = _uint32(_first(dict(request.query.items()), "ClientTransactionID"))
        return web.json_response({"Value": value, "ClientTransactionID": tid,
                                  "ServerTransactionID": self.next_tid()})

    async def apiversions(self, request: web.Request) -> web.Response:
        return self._mgmt(request, [1])

    async def description(self, request: web.Request) -> web.Response:
        return self._mgmt(request, {"ServerName": "tenmon", "Manufacturer": "tenmon",
                                    "ManufacturerVersion": __version__,
                                    "Location": self.obs.config.site.name})

    async def configureddevices(self, request: web.Request) -> web.Response:
        return self._mgmt(request, [
            {"DeviceName": d.device_name, "DeviceType": d.type_name, "DeviceNumber": n,
             "UniqueID": d.unique_id} for (_t, n), d in self.devices.items()])

    async def setup(self, request: web.Request) -> web.Response:
        rows = "".join(f"<li>{d.type_name} {n}: {d.device_name} ({d.unique_id})</li>"
                       for (_t, n), d in self.devices.items())
        return web.Response(content_type="text/html", text=(
            f"<!doctype html><title>tenmon Alpaca</title><h1>tenmon {__version__}: ASCOM "
            f"Alpaca</h1><p>{_html(self.obs.config.site.name)}. Devices:</p><ul>{rows}</ul>"
            "<p>Configuration lives in the site file's <code>[alpaca]</code> section "
            "(docs/alpaca.md); nothing is set from this page.</p>"))

    async def device_setup(self, request: web.Request) -> web.Response:
        dtype = request.match_info["device_type"]
        try:
            number = int(request.match_info["device_number"])
        except ValueError:
            number = -1
        dev = self.devices.get((dtype, number))
        if dev is None:
            return web.Response(status=403, content_type="text/html",
                                text="<!doctype html><p>No such device.</p>")
        return web.Response(content_type="text/html", text=(
            f"<!doctype html><title>{dev.device_name}</title><h1>{dev.device_name}</h1>"
            "<p>Not configurable here: the site file's <code>[alpaca]</code>, "
            "<code>[dome]</code>, <code>[cover]</code> and <code>[weather]</code> sections "
            "configure it (docs/alpaca.md).</p>"))

    # --------------------------------------------------------------- the app

    def app(self) -> web.Application:
        @web.middleware
        async def errors(request: web.Request, handler):
            try:
                return await handler(request)
            except web.HTTPException as exc:
                if exc.status < 400:
                    raise
                return web.Response(status=400 if exc.status in (404, 405) else exc.status,
                                    text=f"{request.method} {request.path[:120]}: {exc.reason}")
            except Exception as exc:  # noqa: BLE001 - answer, and the loop lives on
                log.exception("Alpaca request failed: %s %s", request.method, request.path)
                return web.Response(status=500, text=f"internal error ({type(exc).__name__})")

        app = web.Application(client_max_size=MAX_FORM_BYTES, middlewares=[errors])
        r = app.router
        r.add_get("/management/apiversions", self.apiversions)
        r.add_get("/management/v1/description", self.description)
        r.add_get("/management/v1/configureddevices", self.configureddevices)
        r.add_get("/setup", self.setup)
        r.add_get("/setup/v1/{device_type}/{device_number}/setup", self.device_setup)
        for method in ("GET", "PUT"):
            r.add_route(method, "/api/v1/{device_type}/{device_number}/{member}", self.device)
        return app


def _html(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))


class AlpacaService:
    """The Alpaca HTTP server and discovery responder, started and stopped with the daemon."""

    def __init__(self, obs: Observatory, cfg: AlpacaConfig | None = None):
        self.obs = obs
        self.cfg = cfg or obs.config.alpaca
        self.server = AlpacaServer(obs, self.cfg)
        self.runner: web.AppRunner | None = None
        self.discovery = None
        self.port: int | None = None

    async def start(self) -> None:
        """Listen (and answer discovery). Raises OSError when the port cannot be taken."""
        from tenmon.daemon.api.alpaca_discovery import start_discovery

        self.runner = web.AppRunner(self.server.app(), access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.cfg.host, self.cfg.port)
        try:
            await site.start()
        except OSError:
            await self.runner.cleanup()
            self.runner = None
            raise
        sockets = getattr(site._server, "sockets", None) or []  # noqa: SLF001 - port 0 in tests
        self.port = sockets[0].getsockname()[1] if sockets else self.cfg.port
        self.server.install()
        url = f"http://{self.cfg.host}:{self.port}"
        if self.cfg.discovery:
            try:
                self.discovery = await start_discovery(self.port, self.cfg.discovery_port,
                                                       loopback_only=self.cfg.loopback)
            except OSError as exc:
                self.obs.emit("warning", "alpaca", f"Alpaca discovery cannot listen on UDP "
                              f"{self.cfg.discovery_port}: {exc.strerror or exc}; clients "
                              f"must be given {url} by hand")
        self.obs.emit("info", "alpaca", f"Alpaca server on {url} (dome, covercalibrator, "
                      "safetymonitor, observingconditions)"
                      + (f"; discovery on UDP {self.cfg.discovery_port}" if self.discovery
                         else ""))

    async def stop(self) -> None:
        """Stop serving (never raises: the daemon's own shutdown follows)."""
        self.server.uninstall()
        if self.discovery is not None:
            self.discovery.close()
            self.discovery = None
        if self.runner is not None:
            try:
                await self.runner.cleanup()
            except Exception:  # noqa: BLE001 - the safe-state shutdown must go on
                log.exception("stopping the Alpaca server failed")
            self.runner = None


async def start_alpaca(obs: Observatory) -> AlpacaService | None:
    """The Alpaca service when ``[alpaca] enabled`` (else ``None``), started.

    Raises:
        OSError: the Alpaca port cannot be taken.
    """
    if not obs.config.alpaca.enabled:
        return None
    service = AlpacaService(obs)
    await service.start()
    return service


__all__ = ["AlpacaServer", "AlpacaService", "CommandRules", "Credentials", "load_credentials",
           "start_alpaca", "DRIVER_ERROR"]
