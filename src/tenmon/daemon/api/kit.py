"""The HTTP API's shared rules, for every route (core and services): strict JSON in, strict JSON
out, one route table, one error format.

In: a command's body is JSON (``Content-Type: application/json``, UTF-8, at most
:data:`MAX_BODY_BYTES`, nested at most :data:`MAX_DEPTH` deep, numbers finite and of at most
:data:`MAX_INT_DIGITS` digits) and is validated by a strict pydantic model (:class:`Body`): types
are exact (a bool is not a number, ``"false"`` is not a bool, a number is not a string), numbers
are bounded, unknown keys are refused. An empty body (no content type needed) means ``{}``: a
command without arguments can be sent with nothing but the token. A form post, ``text/plain``
or any other content type with a body is refused (415). Every other problem is a 400 whose
message names it (a body that is not UTF-8, not JSON, too deep, a key with a wrong type...).
Query parameters (:class:`Query`) are as strict: whole numbers are digits only, times are ISO.

Out: :func:`json_response` writes strict JSON: no ``NaN`` or ``Infinity`` anywhere; a
non-finite number becomes ``null`` (one place for every answer).

Errors are ``{"error": {"code": ..., "message": ...}}`` with the HTTP status of the code
(:data:`STATUS_OF`). A route is a :class:`Route`: its method, path, handler, body or query
model and answers; the same table serves requests and the OpenAPI document
(``daemon.openapi``).
"""

from __future__ import annotations

import codecs
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePath
from typing import Annotated, Any, Awaitable, Callable, Mapping

from aiohttp import web
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from tenmon.core.errors import CommandRefused
from tenmon.core.timefmt import parse_utc, utc_iso

PREFIX = "/api/v1"

#: Largest request body read (bytes); aiohttp's ``client_max_size``. Larger: 413.
MAX_BODY_BYTES = 64 * 1024
#: Deepest JSON nesting accepted in a body (the bodies here are flat objects).
MAX_DEPTH = 16
#: Longest integer literal accepted in a body (digits); ``1e999`` and the like are refused too.
MAX_INT_DIGITS = 30
#: Most rows one page of a read (events, history, audit) returns; larger limits are capped.
MAX_PAGE = 1000

def _key(kind: str, name: str, t: type):
    cls = getattr(web, kind, None)  # aiohttp >= 3.13 types these keys; plain strings before
    return cls(name, t) if cls is not None else name


#: Per-request and per-response data the middlewares read: the body as read (for the audit),
#: the token check's outcome, and the answer's error code.
BODY_KEY = _key("RequestKey", "tenmon_body", bytes)
AUTH_KEY = _key("RequestKey", "tenmon_auth", str)
CODE_KEY = _key("ResponseKey", "tenmon_code", str)

#: Content types a browser sends cross-site without asking first (a form, text/plain): a
#: command never takes them, even with an empty body.
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data", "text/plain")

#: Error codes -> HTTP status (the observatory's, the services' and this API's own).
STATUS_OF: dict[str, int] = {
    "bad_request": 400, "unauthorized": 401, "forbidden": 403, "not_found": 404,
    "not_simulated": 404, "method_not_allowed": 405, "too_large": 413,
    "unsupported_media_type": 415, "unsafe": 409, "emergency": 409, "below_horizon": 409,
    "not_latched": 409, "not_active": 409, "not_open": 409, "busy": 409, "sequencer_busy": 409,
    "no_camera": 409, "not_running": 409, "not_configured": 409, "no_star": 409, "hold_off": 409, "closing": 409,
    "actuator_fault": 409, "device_error": 502,
    "shutting_down": 503, "no_token": 503, "reads_busy": 503, "http_error": 400,
    "internal": 500,
}


def status_of(code: str) -> int:
    """The HTTP status of an error ``code`` (409 for a refusal this table does not know)."""
    return STATUS_OF.get(code, 409)


# --------------------------------------------------------------------------- JSON out


def _default(obj: Any) -> Any:
    if isinstance(obj, (PurePath,)):
        return str(obj)
    if isinstance(obj, datetime):  # aware: ISO UTC with Z (tenmon.core.timefmt); naive as it is
        return utc_iso(obj, timespec="auto") if obj.tzinfo is not None else obj.isoformat()
    item = getattr(obj, "item", None)  # numpy scalars
    if callable(item):
        return item()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON")


def finite(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN, +-Infinity) replaced by ``None``, recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    try:
        return finite(_default(obj))
    except TypeError:
        return obj


def dumps(obj: Any) -> str:
    """Strict JSON text of ``obj``: a non-finite number is ``null`` (never ``NaN``)."""
    try:
        return json.dumps(obj, allow_nan=False, default=_default)
    except ValueError:  # a NaN or an infinity somewhere: the slow path, once
        return json.dumps(finite(obj), allow_nan=False, default=_default)


def json_response(data: Any, status: int = 200, *, headers: Mapping[str, str] | None = None):
    """An aiohttp JSON response written by :func:`dumps`."""
    resp = web.Response(text=dumps(data), status=status, content_type="application/json",
                        headers=headers)
    resp[CODE_KEY] = "ok" if status < 400 else "error"
    return resp


def error_response(code: str, message: str, status: int | None = None, *,
                   headers: Mapping[str, str] | None = None):
    """The error answer ``{"error": {"code", "message"}}`` (status from :data:`STATUS_OF`)."""
    resp = json_response({"error": {"code": code, "message": message}},
                         status or status_of(code), headers=headers)
    resp[CODE_KEY] = code
    return resp


def bad_request(message: str) -> CommandRefused:
    return CommandRefused("bad_request", message)


# --------------------------------------------------------------------------- JSON in


class Body(BaseModel):
    """Base of every command body: strict types, finite numbers, no unknown keys."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False,
                              str_max_length=1000)


class NoBody(Body):
    """A command without arguments: an empty body or ``{}``."""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise ValueError(f"the number {text[:24]} is out of range")
    return v


def _bounded_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {digits} digits is out of range (at most "
                         f"{MAX_INT_DIGITS})")
    return int(text)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"the key {_short(k)} is given twice")
        out[k] = v
    return out


def _depth(data: Any) -> int:
    deepest, stack = 0, [(data, 1)]
    while stack:
        node, d = stack.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, d)
            if deepest > MAX_DEPTH:
                return deepest
            stack.extend((v, d + 1) for v in (node.values() if isinstance(node, dict) else node))
    return deepest


def parse_json(raw: bytes) -> Any:
    """The JSON value of a request body, strictly.

    Raises:
        CommandRefused: ``bad_request`` naming the problem: not UTF-8 (with the offending byte),
            a byte-order mark, not JSON (with line and column), ``NaN``/``Infinity``, a number
            out of range, a key given twice, nested deeper than :data:`MAX_DEPTH`.
    """
    if raw.startswith(codecs.BOM_UTF8):
        raise bad_request("the request body starts with a byte-order mark: send plain UTF-8 JSON")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad_request(f"the request body is not UTF-8 text (byte 0x{raw[exc.start]:02x} at "
                          f"offset {exc.start}): send JSON in UTF-8") from None
    try:
        data = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float,
                          parse_int=_bounded_int, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        raise bad_request(f"the request body is not JSON: {exc.msg} at line {exc.lineno} "
                          f"column {exc.colno}") from None
    except RecursionError:
        raise bad_request(f"the request body is nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # from the hooks above
        raise bad_request(f"the request body is not acceptable JSON: {exc}") from None
    if _depth(data) > MAX_DEPTH:
        raise bad_request(f"the request body is nested deeper than {MAX_DEPTH} levels")
    return data


def _short(value: Any, n: int = 40) -> str:
    try:
        text = repr(value)
    except ValueError:  # an int too long to print
        return "a number out of range"
    return text if len(text) <= n else text[: n - 3] + "..."


def validate(model: type[BaseModel], data: Any, what: str = "request body") -> Any:
    """``data`` as ``model``; raises ``CommandRefused("bad_request")`` naming each bad key."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        parts = []
        for err in exc.errors()[:6]:
            loc = ".".join(str(x) for x in err["loc"])
            kind = err["type"]
            if kind == "extra_forbidden":
                known = ", ".join(model.model_fields) or "none"
                parts.append(f"{loc!r}: unknown key (keys here: {known})")
            elif kind == "missing":
                parts.append(f"{loc!r}: missing")
            elif kind == "model_type" or not loc:
                parts.append(f"the {what} must be a JSON object")
            else:
                msg = err["msg"]
                if "input" in err and not isinstance(err["input"], (dict, list)):
                    msg += f" (got {_short(err['input'])})"
                parts.append(f"{loc!r}: {msg}")
        raise bad_request(f"{what}: " + "; ".join(parts)) from None


def _is_json_type(ctype: str) -> bool:
    mime, _, params = ctype.partition(";")
    if mime.strip().lower() != "application/json":
        return False
    for p in params.split(";"):
        k, _, v = p.partition("=")
        if k.strip().lower() == "charset" and v.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return False
    return True


async def read_raw(request) -> bytes:
    """The request's body bytes (at most :data:`MAX_BODY_BYTES`), kept for the audit.

    Raises:
        CommandRefused: ``too_large`` beyond the limit.
    """
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        request[BODY_KEY] = f"(not read: over {MAX_BODY_BYTES} bytes)".encode()
        raise CommandRefused("too_large", f"the request body is over {MAX_BODY_BYTES} bytes"
                             ) from None
    request[BODY_KEY] = raw
    return raw


async def read_body(request, model: type[BaseModel] = NoBody) -> Any:
    """The command body of ``request`` validated as ``model`` (see the module's rules).

    Raises:
        CommandRefused: ``unsupported_media_type`` (415), ``too_large`` (413), ``bad_request``.
    """
    ctype = request.headers.get("Content-Type")
    mime = (ctype or "").partition(";")[0].strip().lower()
    if mime in FORM_TYPES:
        raise CommandRefused("unsupported_media_type", "commands take a JSON body "
                             f"(Content-Type: application/json, UTF-8), not {_short(ctype, 60)}")
    raw = await read_raw(request)
    if not raw:
        return validate(model, {})
    if ctype is None or not _is_json_type(ctype):
        raise CommandRefused("unsupported_media_type", "a command's body must be JSON sent "
                             "with Content-Type: application/json (UTF-8), not "
                             + (_short(ctype, 60) if ctype else "without a content type"))
    data = parse_json(raw)
    if not isinstance(data, dict):
        raise bad_request(f"the request body must be a JSON object, not {type(data).__name__}"
                          .replace("NoneType", "null"))
    return validate(model, data)


# --------------------------------------------------------------------------- query parameters


class Query(BaseModel):
    """Base of query-parameter models: no unknown parameters; values arrive as text."""

    model_config = ConfigDict(extra="forbid")


class NoQuery(Query):
    """A route without query parameters."""


def _whole(v: Any) -> Any:
    if isinstance(v, str):
        if not re.fullmatch(r"[0-9]{1,15}", v):
            raise ValueError("must be a whole number written with the digits 0-9 (no sign, at "
                             "most 15 digits)")
        return int(v)
    return v


def _iso_time(v: Any) -> Any:
    if isinstance(v, str):
        text = re.sub(r"[zZ]$", "+00:00", v.strip()).replace("t", "T")
        if len(text) > 40:
            raise ValueError("must be an ISO time such as 2026-11-21T13:00:00Z")
        # RFC 3339 allows a leap second; Python's datetime does not: take the second before
        text = re.sub(r"(T\d\d:\d\d):60(\.\d+)?", r"\1:59.999999", text)
        try:
            return parse_utc(text)
        except (ValueError, OverflowError):
            raise ValueError("must be an ISO time such as 2026-11-21T13:00:00Z") from None
    return v


def _integral(v: Any) -> Any:
    if isinstance(v, float) and v.is_integer() and abs(v) < 2 ** 53:
        return int(v)  # JSON has one number type: 6.0 is the integer 6 (as JSON Schema says)
    return v


#: A whole number in a query string (digits only: ``-1``, ``1.0``, ``1e3`` are refused).
QueryInt = Annotated[int, Field(ge=0, le=10 ** 15 - 1), BeforeValidator(_whole)]
#: A count in a query string (1 or more).
QueryCount = Annotated[int, Field(ge=1, le=10 ** 15 - 1), BeforeValidator(_whole)]
#: A time in a query string (ISO 8601 / RFC 3339; UTC when it names no zone).
QueryTime = Annotated[datetime, BeforeValidator(_iso_time)]
#: An integer in a JSON body: a number without a fraction (``6`` or ``6.0``; never ``true``).
#: The validator of JsonInt, to put after a Field with bounds (``Annotated[int, Field(ge=1),
#: INTEGRAL]``): nested in another Annotated, the bounds would reach the JSON schema as 'ge'/'le'
#: instead of 'minimum'/'maximum'.
INTEGRAL = BeforeValidator(_integral)
JsonInt = Annotated[int, INTEGRAL]


def parse_query(request, model: type[BaseModel] = NoQuery) -> Any:
    """The query parameters of ``request`` as ``model``; a parameter given twice is refused."""
    seen: set[str] = set()
    for k, _v in request.query.items():
        if k in seen:
            raise bad_request(f"query parameter {k!r} is given twice")
        seen.add(k)
    return validate(model, dict(request.query), what="query")


# --------------------------------------------------------------------------- routes

#: What every command may answer besides its success, and what every read may answer.
COMMAND_ERRORS = {400: "bad request: a key missing, of the wrong type or out of range; a body "
                       "that is not UTF-8 JSON",
                  401: "no API token, or a wrong one (the message says where the token lives)",
                  403: "the Host or Origin header is not the daemon's",
                  409: "refused by the observatory (unsafe, emergency stop latched...)",
                  413: f"body over {MAX_BODY_BYTES} bytes",
                  415: "a body that is not application/json",
                  502: "a device failed",
                  503: "shutting down, or the API has no token"}
READ_ERRORS = {400: "bad query parameter",
               401: "no API token, or a wrong one (reads need it off loopback)",
               403: "the Host or Origin header is not the daemon's",
               503: "too many reads in progress"}


@dataclass(frozen=True)
class Route:
    """One API route: served by :meth:`aiohttp_handler` and documented by ``daemon.openapi``.

    ``handler(request, args)`` gets the validated body (commands: ``body``, default
    :class:`NoBody`) or query (reads: ``query``, default :class:`NoQuery`); with ``raw_body``
    it reads the body itself (the emergency stop). ``answers`` maps the success statuses to
    their descriptions and ``answer_schema`` describes the success body (JSON Schema).
    ``secret`` reads need the token even on loopback. ``path_params``: JSON Schemas of the
    ``{name}`` parts of the path. ``body_schema`` documents the body instead of ``body``'s
    schema when the handler checks more than the model says (it must check exactly that).
    """

    method: str
    path: str
    handler: Callable[[Any, Any], Awaitable[Any]]
    summary: str
    body: type[BaseModel] | None = None
    body_schema: Mapping[str, Any] | None = None
    query: type[BaseModel] | None = None
    answers: Mapping[int, str] = field(default_factory=lambda: {200: "done"})
    answer_schema: Mapping[str, Any] | None = None
    errors: Mapping[int, str] | None = None
    description: str | None = None
    secret: bool = False
    raw_body: bool = False
    path_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    tag: str = "observatory"

    @property
    def command(self) -> bool:
        """A command (anything but a read): needs the token, is audited."""
        return self.method.upper() not in ("GET", "HEAD")

    @property
    def error_answers(self) -> Mapping[int, str]:
        return self.errors if self.errors is not None else (
            COMMAND_ERRORS if self.command else READ_ERRORS)

    def aiohttp_handler(self) -> Callable[[Any], Awaitable[Any]]:
        """The aiohttp handler: parse and validate, call, turn a refusal into its error."""
        route = self

        async def handle(request):
            try:
                if route.raw_body:
                    args = None
                elif route.command:
                    args = await read_body(request, route.body or NoBody)
                else:
                    args = parse_query(request, route.query or NoQuery)
                return await route.handler(request, args)
            except CommandRefused as exc:
                return error_response(exc.code, str(exc))

        handle.tenmon_route = route  # type: ignore[attr-defined]  # read by the guard
        return handle


def legacy_route(method: str, path: str, handler: Callable[[Any], Awaitable[Any]]) -> Route:
    """A ``(method, path, handler(request))`` entry of ``obs.api_routes`` from an extension
    that does not declare a :class:`Route`: served (token, Host/Origin, audit and JSON-out
    rules still apply), its body unchecked and documented as any JSON object."""

    async def call(request, _args):
        try:
            return await handler(request)
        except CommandRefused as exc:
            return error_response(exc.code, str(exc))

    return Route(method.upper(), path, call, summary=f"{method.upper()} {path} (an extension's "
                 "route)", raw_body=True, answer_schema={"type": "object"}, tag="extension")


__all__ = ["PREFIX", "MAX_BODY_BYTES", "MAX_DEPTH", "MAX_PAGE", "STATUS_OF", "status_of",
           "BODY_KEY", "AUTH_KEY", "CODE_KEY", "dumps", "finite", "json_response", "error_response", "bad_request", "Body", "NoBody",
           "Query", "NoQuery", "QueryInt", "QueryCount", "QueryTime", "JsonInt", "INTEGRAL", "parse_json", "validate", "read_raw",
           "read_body", "parse_query", "Route", "legacy_route", "COMMAND_ERRORS", "READ_ERRORS"]
