"""The daemon's HTTP API on 127.0.0.1: a status snapshot and commands, JSON in and out.

Routes live under ``/api/v1``; errors are ``{"error": {"code": ..., "message": ...}}`` with an
HTTP status. (ASCOM Alpaca endpoints will live under ``/api/v1/alpaca`` later, apart from these.)
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

from aiohttp import web

from tenmon.daemon.observatory import Observatory
from tenmon.errors import CommandRefused

log = logging.getLogger(__name__)

PREFIX = "/api/v1"

#: CommandRefused codes -> HTTP status
STATUS_OF = {"bad_request": 400, "not_simulated": 404, "unsafe": 409, "emergency": 409,
             "shutting_down": 503, "below_horizon": 409, "device_error": 502,
             "not_latched": 409, "hold_off": 409, "closing": 409, "actuator_fault": 409}


def _error(code: str, message: str, status: int) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        data = await request.json()
    except json.JSONDecodeError as exc:
        raise CommandRefused("bad_request", f"request body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CommandRefused("bad_request", "request body must be a JSON object")
    return data


def _number(data: dict, key: str) -> float:
    if key not in data:
        raise CommandRefused("bad_request", f"missing {key!r}")
    try:
        return float(data[key])
    except (TypeError, ValueError):
        raise CommandRefused("bad_request", f"{key!r} must be a number, got {data[key]!r}") from None


def build_app(obs: Observatory) -> web.Application:
    """The aiohttp application serving ``obs``."""
    app = web.Application()
    routes = web.RouteTableDef()

    def command(path: str, fn: Callable[[dict], Any]) -> None:
        async def handler(request: web.Request) -> web.Response:
            try:
                fn(await _body(request))
            except CommandRefused as exc:
                return _error(exc.code, str(exc), STATUS_OF.get(exc.code, 409))
            return web.json_response({"ok": True, "status": obs.status()})
        app.router.add_post(PREFIX + path, handler)

    @routes.get(PREFIX + "/status")
    async def status(request: web.Request) -> web.Response:
        return web.json_response(obs.status())

    @routes.get(PREFIX + "/events")
    async def events(request: web.Request) -> web.Response:
        q = request.query
        try:
            since = _parse_time(q["since"]) if "since" in q else None
            after_id = int(q["after_id"]) if "after_id" in q else None
            limit = min(10000, int(q.get("limit", "200")))
        except ValueError as exc:
            return _error("bad_request", str(exc), 400)
        return web.json_response({"events": obs.store.events(since=since, after_id=after_id,
                                                              limit=limit)})

    @routes.get(PREFIX + "/history/{device}")
    async def history(request: web.Request) -> web.Response:
        return web.json_response({"history": obs.store.history(request.match_info["device"])})

    app.add_routes(routes)
    for method, path, handler in getattr(obs, "api_routes", []):
        app.router.add_route(method, PREFIX + path, handler)
    command("/dome/goto", lambda b: obs.dome_goto(_number(b, "azimuth_deg")))
    command("/dome/home", lambda b: obs.dome_home())
    command("/dome/park", lambda b: obs.dome_park())
    command("/dome/abort", lambda b: obs.dome_abort())
    command("/slit/open", lambda b: obs.slit_open())
    command("/slit/close", lambda b: obs.slit_close())
    command("/cover/open", lambda b: obs.cover_open())
    command("/cover/close", lambda b: obs.cover_close())
    command("/mount/goto", lambda b: obs.mount_goto(_number(b, "ra_deg"), _number(b, "dec_deg")))
    command("/mount/park", lambda b: obs.mount_park())
    command("/mount/abort", lambda b: obs.mount_abort())
    command("/stop", lambda b: obs.emergency_stop(str(b.get("reason") or "operator")))
    command("/resume", lambda b: obs.resume())
    command("/sim/weather", lambda b: obs.sim_weather(
        str(b.get("condition", "")), _number(b, "wind_ms") if "wind_ms" in b else None))
    command("/sim/fault", lambda b: obs.sim_fault(str(b.get("name", "")), bool(b.get("clear"))))

    @web.middleware
    async def errors(request: web.Request, handler: Callable[[web.Request], Awaitable]):
        try:
            return await handler(request)
        except web.HTTPException as exc:
            return _error("not_found" if exc.status == 404 else "http_error",
                          f"{request.method} {request.path}: {exc.reason}", exc.status)
        except Exception as exc:  # noqa: BLE001 - an API bug must answer, and the loop live on
            log.exception("API handler failed: %s %s", request.method, request.path)
            return _error("internal", f"internal error: {exc}", 500)

    app.middlewares.append(errors)
    return app


def _parse_time(text: str) -> datetime:
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)
