"""The OpenAPI 3.1 document of tenmon's own HTTP API, made from the route table that serves it.

Every :class:`~tenmon.daemon.api.kit.Route` becomes one operation: its body model (pydantic's
JSON Schema, strict: exact types, bounds, no unknown keys) or its query parameters, its path
parameters, its answers and their schemas, and whether it needs the token. Served at
``GET /api/v1/openapi.json``; the property-based fuzz of the API (tests/daemon/test_api_fuzz.py)
runs against it, so a route whose document is not true fails there.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

from pydantic import BaseModel

from tenmon.daemon.api.kit import PREFIX, Route

ERROR_SCHEMA = {
    "type": "object", "required": ["error"], "additionalProperties": False,
    "properties": {"error": {
        "type": "object", "required": ["code", "message"], "additionalProperties": False,
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}},
}

_REF = "#/components/schemas/{model}"


def _model_schema(model: type[BaseModel], mode: str, components: dict[str, Any]) -> dict:
    schema = model.model_json_schema(ref_template=_REF, mode=mode)
    for name, sub in schema.pop("$defs", {}).items():
        components.setdefault(name, sub)
    return schema


def _operation_id(route: Route) -> str:
    words = re.sub(r"[{}]", "", route.path).strip("/").replace("/", "_").replace(".", "_")
    return f"{route.method.lower()}_{words or 'root'}"


def _query_parameters(model: type[BaseModel], components: dict[str, Any]) -> list[dict]:
    schema = _model_schema(model, "validation", components)
    required = set(schema.get("required", []))
    params = []
    for name, prop in schema.get("properties", {}).items():
        prop = dict(prop)
        desc = prop.pop("description", None)
        prop.pop("title", None)
        if "default" in prop and prop["default"] is None:
            del prop["default"]
        # a query parameter is absent or a string, never null
        alts = [a for a in prop.pop("anyOf", []) if a.get("type") != "null"]
        if len(alts) == 1:
            prop.update(alts[0])
        elif alts:
            prop["anyOf"] = alts
        p = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if desc:
            p["description"] = desc
        params.append(p)
    return params


def document(routes: Iterable[Route], *, version: str, remote: bool = False) -> dict[str, Any]:
    """The OpenAPI document of ``routes`` (paths under :data:`PREFIX`).

    ``remote``: the API is bound to an address other machines reach, so reads need the token too.
    """
    components: dict[str, Any] = {"Error": ERROR_SCHEMA}
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        op: dict[str, Any] = {"operationId": _operation_id(route), "summary": route.summary,
                              "tags": [route.tag]}
        if route.description:
            op["description"] = route.description
        needs_token = route.command or route.secret or remote
        op["security"] = [{"bearer": []}] if needs_token else [{}, {"bearer": []}]
        params = [{"name": name, "in": "path", "required": True, "schema": dict(schema)}
                  for name, schema in route.path_params.items()]
        if not route.command:
            params += _query_parameters(route.query, components) if route.query else []
        if params:
            op["parameters"] = params
        if route.command and (route.body is not None or route.body_schema is not None):
            schema = (dict(route.body_schema) if route.body_schema is not None
                      else _model_schema(route.body, "validation", components))
            op["requestBody"] = {
                "required": bool(schema.get("required")),
                "description": "JSON (UTF-8); an empty body is {}",
                "content": {"application/json": {"schema": schema}}}
        elif route.command and not route.raw_body:
            op["requestBody"] = {"required": False, "description": "no arguments: empty or {}",
                                 "content": {"application/json": {"schema": {
                                     "type": "object", "additionalProperties": False,
                                     "properties": {}}}}}
        responses: dict[str, Any] = {}
        for status, desc in route.answers.items():
            responses[str(status)] = {"description": desc, "content": {"application/json": {
                "schema": dict(route.answer_schema or {"type": "object"})}}}
        for status, desc in route.error_answers.items():
            responses.setdefault(str(status), {"description": desc, "content": {
                "application/json": {"schema": {"$ref": _REF.format(model="Error")}}}})
        if route.command:
            responses.setdefault("405", {"description": "method not allowed", "content": {
                "application/json": {"schema": {"$ref": _REF.format(model="Error")}}}})
        op["responses"] = responses
        paths.setdefault(PREFIX + route.path, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "tenmon daemon API", "version": version,
                 "description": "The observatory daemon's HTTP API. Commands need "
                                "'Authorization: Bearer TOKEN' (the token is in the data "
                                "directory's api.token unless the config names another); reads "
                                "need it too when the API is reachable from other machines. "
                                "Errors are {\"error\": {\"code\", \"message\"}}."},
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": {"bearer": {
            "type": "http", "scheme": "bearer",
            "description": "the API token (api.token in the daemon's data directory)"}}},
    }


__all__ = ["document", "ERROR_SCHEMA"]
