"""The daemon's HTTP API: a status snapshot, reads of the record, and commands, JSON in and out.

Routes live under ``/api/v1`` (:func:`core_routes` here, plus the services' ``obs.api_routes``);
errors are ``{"error": {"code": ..., "message": ...}}`` with an HTTP status. (ASCOM Alpaca
endpoints will live under ``/api/v1/alpaca`` later, apart from these.)

Every request passes, in this order: the Host/Origin check (403; ``daemon.api_access``), the token
(commands always, reads when the API is reachable from other machines, the audit trail always:
401, or 503 when the daemon has no token), then the route's strict input rules (415, 413, 400;
``daemon.api_kit``). Every command is recorded in the audit trail (``daemon.audit``), refused
ones included. Reads of the database run on worker threads (``daemon.api_reads``), never on the
event loop that ticks the control loop. ``GET /api/v1/openapi.json`` documents all of it.

The emergency stop (``POST /stop``) stops whatever its body holds: an unreadable or wrong body
(not JSON, not UTF-8, another content type, unknown keys) still stops, with the reason
"operator (unreadable reason)", and is answered 200 with a ``note``. It needs the token like
every command.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from typing import Any, Literal

from aiohttp import web
from pydantic import Field

from tenmon import __version__
from tenmon.daemon.api.access import ApiAccess, load_token
from tenmon.daemon.api.kit import (AUTH_KEY, BODY_KEY, CODE_KEY, COMMAND_ERRORS, MAX_BODY_BYTES,
                                   MAX_PAGE, PREFIX, READ_ERRORS, STATUS_OF, Body, NoBody, Query,
                                   QueryCount, QueryInt, QueryTime, Route, error_response,
                                   json_response, legacy_route, read_body)
from tenmon.daemon.api.reads import StoreReader, events_page, history_page
from tenmon.daemon.api.audit import AuditLog, audit_page
from tenmon.daemon.observatory import Observatory
from tenmon.core.errors import CommandRefused

log = logging.getLogger(__name__)

#: Devices whose state history is recorded (``GET /history/{device}``).
HISTORY_DEVICES = ("dome", "slit", "cover", "mount", "safety")
UNREADABLE_REASON = "operator (unreadable reason)"

# --------------------------------------------------------------------------- bodies and queries


class DomeGoto(Body):
    azimuth_deg: float = Field(ge=0, le=360, description="target azimuth, degrees (north 0, "
                               "east 90)")


class MountGoto(Body):
    ra_deg: float = Field(ge=0, lt=360, description="ICRS right ascension, degrees")
    dec_deg: float = Field(ge=-90, le=90, description="ICRS declination, degrees")


class Stop(Body):
    reason: str = Field(default="operator", max_length=200,
                        description="recorded in the event log")


class SimWeather(Body):
    condition: Literal["rain", "clear", "wind", "humid"]
    wind_ms: float | None = Field(default=None, ge=0, le=100, description="wind speed, m/s")


class SimFault(Body):
    name: str = Field(max_length=64, description="dome-stall, slit-stall, "
                      "cover-stall, encoder-dropout, slit-state-hidden, relay-unplugged, "
                      "relay-stuck:CHANNEL, mount-disconnect, weather-stale, weather-nan, "
                      "rain-cable-cut; with clear: the fault to clear, or '' / 'all'")
    clear: bool = Field(default=False, description="clear the fault instead of injecting it")


def fault_names(obs: Observatory) -> list[str]:
    """The faults the simulated world can be given here (``relay-stuck:N`` for each channel
    that every relay bank has)."""
    from tenmon.drivers.sim.world import FAULTS

    channels = min((bank.channels for bank in obs.config.relays.values()), default=0)
    return sorted(set(FAULTS) - {"relay-stuck"}) + [f"relay-stuck:{c}"
                                                    for c in range(1, channels + 1)]


def _sim_fault_schema(names: list[str]) -> dict[str, Any]:
    """The body of ``POST /sim/fault``: a fault to inject; with clear, one to clear or all."""
    any_fault = "^(" + "|".join(re.escape(n) for n in names) + ")$"
    return {"type": "object", "additionalProperties": False,
            "properties": {"name": {"type": "string", "maxLength": 64,
                                    "description": SimFault.model_fields["name"].description},
                           "clear": {"type": "boolean", "default": False}},
            "required": ["name"],
            "if": {"properties": {"clear": {"const": True}}, "required": ["clear"]},
            "then": {"properties": {"name": {"pattern": any_fault[:-2] + "|all|)$"}}},
            "else": {"properties": {"name": {"pattern": any_fault}}}}


class EventsQuery(Query):
    since: QueryTime | None = Field(default=None, description="only events at or after this "
                                    "ISO time (UTC unless it names a zone)")
    level: Literal["info", "warning", "error", "alarm"] | None = None
    after_id: QueryInt | None = Field(default=None, description="page forward: the oldest "
                                      "events after this id")
    before_id: QueryInt | None = Field(default=None, description="page back: the newest "
                                       "events before this id")
    limit: QueryCount = Field(default=200, description=f"at most this many (values over "
                              f"{MAX_PAGE} are capped to {MAX_PAGE})")


class HistoryQuery(Query):
    limit: QueryCount = Field(default=100, description=f"at most this many (capped to "
                              f"{MAX_PAGE})")


class AuditQuery(Query):
    after_id: QueryInt | None = None
    before_id: QueryInt | None = None
    limit: QueryCount = Field(default=100, description=f"capped to {MAX_PAGE}")


# --------------------------------------------------------------------------- answer schemas

STATUS_SCHEMA = {"type": "object",
                 "required": ["mode", "time_utc", "daemon", "dome", "slit", "cover", "mount",
                              "safety"],
                 "properties": {"mode": {"enum": ["site", "simulated"]},
                                "time_utc": {"type": "string"},
                                **{k: {"type": "object"} for k in ("daemon", "dome", "slit",
                                                                  "cover", "mount", "safety")}}}
COMMAND_SCHEMA = {"type": "object", "required": ["ok", "status"],
                  "properties": {"ok": {"const": True}, "status": STATUS_SCHEMA,
                                 "note": {"type": "string"}}}
_PAGE = {"limit": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
         "more": {"type": "boolean"}, "next_after_id": {"type": "integer", "minimum": 0},
         "next_before_id": {"type": ["integer", "null"]}}
EVENT_SCHEMA = {"type": "object", "required": ["id", "time_utc", "level", "kind", "message",
                                               "data"],
                "properties": {"id": {"type": "integer"}, "time_utc": {"type": "string"},
                               "level": {"enum": ["info", "warning", "error", "alarm"]},
                               "kind": {"type": "string"}, "message": {"type": "string"},
                               "data": {"type": "object"}}}
EVENTS_SCHEMA = {"type": "object", "required": ["events", *_PAGE],
                 "properties": {"events": {"type": "array", "items": EVENT_SCHEMA}, **_PAGE}}
HISTORY_SCHEMA = {"type": "object", "required": ["device", "history", "limit", "more"],
                  "properties": {"device": {"enum": list(HISTORY_DEVICES)},
                                 "history": {"type": "array", "items": {"type": "object"}},
                                 "limit": _PAGE["limit"], "more": _PAGE["more"]}}
AUDIT_ROW_SCHEMA = {"type": "object",
                    "required": ["id", "time_utc", "client", "method", "route", "body", "status",
                                 "code", "auth"],
                    "properties": {"id": {"type": "integer"}, "time_utc": {"type": "string"},
                                   "client": {"type": "string"}, "method": {"type": "string"},
                                   "route": {"type": "string"}, "body": {"type": "string"},
                                   "status": {"type": "integer"}, "code": {"type": "string"},
                                   "auth": {"enum": ["ok", "missing", "wrong", "unavailable",
                                                     "-"]}}}
AUDIT_SCHEMA = {"type": "object", "required": ["audit", *_PAGE],
                "properties": {"audit": {"type": "array", "items": AUDIT_ROW_SCHEMA}, **_PAGE}}
#: How long a read of the audit trail waits for the store's writer to write queued rows.
AUDIT_WRITER_WAIT_S = 2.0
SIM_ERRORS = {**COMMAND_ERRORS, 404: "not the simulated observatory"}


def _json_bytes(body: bytes) -> web.Response:
    resp = web.Response(body=body, content_type="application/json")
    resp[CODE_KEY] = "ok"
    return resp


def core_routes(obs: Observatory, reader: StoreReader) -> list[Route]:
    """The observatory's own routes (the services add theirs through ``obs.api_routes``)."""
    routes: list[Route] = []

    def command(path: str, summary: str, fn, body=NoBody, errors=None) -> None:
        async def handler(request, args) -> web.Response:
            fn(args)
            return json_response({"ok": True, "status": obs.status()})
        routes.append(Route("POST", path, handler, summary, body=body,
                            answers={200: "done: the status after the command"},
                            answer_schema=COMMAND_SCHEMA, errors=errors))

    async def status(request, _args):
        return json_response(obs.status())

    async def events(request, q: EventsQuery):
        return _json_bytes(await reader.read(events_page, since=q.since, level=q.level,
                                             after_id=q.after_id, before_id=q.before_id,
                                             limit=q.limit))

    async def history(request, q: HistoryQuery):
        device = request.match_info["device"]
        if device not in HISTORY_DEVICES:
            raise CommandRefused("not_found", f"no history of {device[:40]!r} (devices: "
                                 + ", ".join(HISTORY_DEVICES) + ")")
        return _json_bytes(await reader.read(history_page, device=device, limit=q.limit))

    async def audit(request, q: AuditQuery):
        # Read your own writes: a command's row is queued on the store's writer as its answer
        # goes out, so wait (off the loop, at most 2 s: a stuck disk must not hold the read)
        # until the writer has caught up before reading.
        await asyncio.to_thread(obs.store.flush, AUDIT_WRITER_WAIT_S)
        return _json_bytes(await reader.read(audit_page, after_id=q.after_id,
                                             before_id=q.before_id, limit=q.limit))

    async def stop(request, _args) -> web.Response:
        reason, note = "operator", None
        try:
            args = await read_body(request, Stop)
            reason = args.reason.strip() or "operator"
        except CommandRefused as exc:
            reason = UNREADABLE_REASON
            note = f"stopped; the request body was not understood ({exc})"
        obs.emergency_stop(reason)
        out: dict[str, Any] = {"ok": True, "status": obs.status()}
        if note:
            out["note"] = note
        return json_response(out)

    routes.append(Route("GET", "/status", status, "the observatory's state now",
                        answers={200: "the status snapshot"}, answer_schema=STATUS_SCHEMA))
    routes.append(Route("GET", "/events", events, "the event log, in pages", query=EventsQuery,
                        answers={200: "a page of events, oldest first"},
                        answer_schema=EVENTS_SCHEMA,
                        description="Without after_id: the newest events (before before_id when "
                                    "given). With after_id: the oldest events after it. Follow "
                                    "with after_id = next_after_id."))
    routes.append(Route("GET", "/history/{device}", history, "a device's recorded states",
                        query=HistoryQuery, answers={200: "the newest states, oldest first"},
                        answer_schema=HISTORY_SCHEMA,
                        errors={**READ_ERRORS, 404: "no such device"},
                        path_params={"device": {"enum": list(HISTORY_DEVICES)}}))
    routes.append(Route("GET", "/audit", audit, "the audit trail: who commanded what",
                        query=AuditQuery, answers={200: "a page of audit rows, oldest first"},
                        answer_schema=AUDIT_SCHEMA, secret=True,
                        errors={**READ_ERRORS, 401: "no API token, or a wrong one (the audit "
                                "trail always needs it)"}))
    command("/dome/goto", "rotate the dome to an azimuth",
            lambda b: obs.dome_goto(b.azimuth_deg), body=DomeGoto)
    command("/dome/home", "rotate the dome to its home azimuth", lambda b: obs.dome_home())
    command("/dome/park", "rotate the dome to its park azimuth", lambda b: obs.dome_park())
    command("/dome/abort", "stop the dome", lambda b: obs.dome_abort())
    command("/slit/open", "open the slit (refused while unsafe)", lambda b: obs.slit_open())
    command("/slit/close", "close the slit", lambda b: obs.slit_close())
    command("/cover/open", "open the mirror cover (refused while unsafe)",
            lambda b: obs.cover_open())
    command("/cover/close", "close the mirror cover", lambda b: obs.cover_close())
    command("/mount/goto", "slew the mount to RA/Dec (refused while unsafe or below the "
            "horizon)", lambda b: obs.mount_goto(b.ra_deg, b.dec_deg), body=MountGoto)
    command("/mount/park", "park the mount", lambda b: obs.mount_park())
    command("/mount/abort", "stop the mount", lambda b: obs.mount_abort())
    routes.append(Route(
        "POST", "/stop", stop, "EMERGENCY STOP: stop all motion, close the slit (latched)",
        body=Stop, raw_body=True, answers={200: "stopped (with a note when the body was not "
                                                "understood: it stops all the same)"},
        body_schema={"description": "any body: {\"reason\": TEXT} (at most 200 characters) "
                     "is recorded; anything else stops all the same",
                     "anyOf": [Stop.model_json_schema(), {}]},
        answer_schema=COMMAND_SCHEMA,
        errors={k: v for k, v in COMMAND_ERRORS.items() if k in (401, 403, 503)},
        description="Stops whatever its body holds: a body that is not JSON, not UTF-8 or not "
                    "as documented still stops, with the reason 'operator (unreadable reason)'."))
    command("/resume", "clear a latched emergency stop", lambda b: obs.resume())
    def sim_site():
        if obs.sim is None:
            raise CommandRefused("not_simulated", "`sim` commands need the simulated observatory")
        return obs.sim

    command("/sim/weather", "simulated observatory: set the weather",
            lambda b: sim_site().set_weather(b.condition, b.wind_ms), body=SimWeather,
            errors=SIM_ERRORS)
    faults = fault_names(obs)

    def sim_fault(b: SimFault) -> None:
        if b.clear and b.name in ("", "all"):
            pass
        elif b.name not in faults:
            raise CommandRefused("bad_request", f"unknown fault {b.name[:64]!r}; known: "
                                 + ", ".join(faults))
        elif b.clear and obs.sim is not None and b.name not in obs.sim.active_faults():
            raise CommandRefused("not_active", f"the fault {b.name!r} is not active (active: "
                                 + (", ".join(obs.sim.active_faults()) or "none") + ")")
        sim_site().fault(b.name, b.clear)

    command("/sim/fault", "simulated observatory: inject or clear a fault", sim_fault,
            body=SimFault, errors={**SIM_ERRORS, 409: "the fault to clear is not active"})
    routes[-1] = dataclasses.replace(routes[-1], body_schema=_sim_fault_schema(faults))
    return routes


# --------------------------------------------------------------------------- the application


def build_app(obs: Observatory) -> web.Application:
    """The aiohttp application serving ``obs``: its routes and the services' ``obs.api_routes``.

    Loads (on the first start: creates) the API token, creates the audit table, and starts the
    read threads (stopped with the application).
    """
    api = obs.config.api
    token = load_token(api, obs.config.paths.data_dir)
    if token.created:
        obs.emit("info", "api", f"API token created in {token.where} (mode 0600): commands "
                 "need it; the CLI reads it from there")
    if token.problem:
        obs.emit("alarm", "api", f"{token.problem}: the API refuses every command until this is "
                 "fixed (safety goes on)")
    if token.warning:
        obs.emit("warning", "api", token.warning)
    access = ApiAccess(api, token)
    audit_log = AuditLog(obs.store, obs.clock, api.audit_keep_days)
    reader = StoreReader(getattr(obs.store, "path", None), fallback=lambda: obs.store.db)

    routes = core_routes(obs, reader)
    for entry in getattr(obs, "api_routes", []):
        routes.append(entry if isinstance(entry, Route) else legacy_route(*entry))
    doc: dict[str, Any] = {}

    async def openapi(request, _args):
        if not doc:
            from tenmon.daemon.api.openapi import document

            doc.update(document(routes, version=__version__, remote=access.reads_need_token))
        return json_response(doc)

    routes.append(Route("GET", "/openapi.json", openapi, "this API's OpenAPI document",
                        answers={200: "the OpenAPI 3.1 document"},
                        answer_schema={"type": "object", "required": ["openapi", "paths"]},
                        tag="meta"))

    @web.middleware
    async def audited(request: web.Request, handler):
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return await handler(request)
        resp = await handler(request)  # `errors` below turns every failure into an answer
        try:
            audit_log.record(client=request.remote, method=request.method,
                             route=request.rel_url.path_qs, body=request.get(BODY_KEY),
                             status=resp.status,
                             code=resp.get(CODE_KEY, "ok" if resp.status < 400 else "error"),
                             auth=request.get(AUTH_KEY, "-"))
        except Exception:  # noqa: BLE001 - an audit bug must not turn a done command into a 500
            log.exception("audit record failed")
        return resp

    @web.middleware
    async def errors(request: web.Request, handler):
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
                exc.status, "http_error")
            headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            return error_response(code, f"{request.method} {request.path}: {exc.reason}",
                                  exc.status, headers=headers)
        except CommandRefused as exc:
            return error_response(exc.code, str(exc))
        except Exception as exc:  # noqa: BLE001 - an API bug must answer, and the loop live on
            log.exception("API handler failed: %s %s", request.method, request.path)
            return error_response("internal", f"internal error ({type(exc).__name__})", 500)

    @web.middleware
    async def guard(request: web.Request, handler):
        sock = request.transport.get_extra_info("sockname") if request.transport else None
        local = (str(sock[0]), int(sock[1])) if isinstance(sock, tuple) and len(sock) >= 2 \
            else (None, None)
        why = access.refusal(request.headers, local)
        if why is not None:
            return error_response("forbidden", why, 403)
        if getattr(request.match_info.handler, "tenmon_public", False):
            return await handler(request)  # the operator page's own files: no data in them
        route = getattr(request.match_info.handler, "tenmon_route", None)
        reading = request.method in ("GET", "HEAD")
        if not reading or access.reads_need_token or (route is not None and route.secret):
            outcome, message = access.check_token(request.headers.get("Authorization"))
            request[AUTH_KEY] = outcome
            if outcome == "unavailable":
                return error_response("no_token", message, 503)
            if outcome != "ok":
                return error_response("unauthorized", message, 401,
                                      headers={"WWW-Authenticate": 'Bearer realm="tenmon"'})
        return await handler(request)

    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[audited, errors, guard])
    for route in routes:
        app.router.add_route(route.method, PREFIX + route.path, route.aiohttp_handler())

    from tenmon.daemon.api.page import install_page

    install_page(app, obs)  # the operator page at / (outside /api/v1; docs/operator-page.md)

    async def close_reader(_app) -> None:
        reader.close()

    app.on_cleanup.append(close_reader)
    return app


__all__ = ["build_app", "core_routes", "PREFIX", "STATUS_OF", "HISTORY_DEVICES",
           "UNREADABLE_REASON"]
