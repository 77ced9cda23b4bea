"""A small HTTP client for the daemon's API (stdlib only, so the CLI starts fast)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tenmon.errors import ApiError

DEFAULT_URL = "http://127.0.0.1:8470"


def resolve_url(url: str | None = None, config: str | None = None) -> str:
    """The daemon's URL: ``--url``, else $TENMON_URL, else the config file's [api], else default.

    The config file is ``--config`` or, when readable, /etc/tenmon/tenmon.toml.
    """
    if url:
        return url.rstrip("/")
    if os.environ.get("TENMON_URL"):
        return os.environ["TENMON_URL"].rstrip("/")
    path = Path(config) if config else Path("/etc/tenmon/tenmon.toml")
    if config or path.is_file():
        import tomllib

        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ApiError("bad_config", f"{path}: cannot read the API address: {exc}") from None
        api = data.get("api", {})
        host = os.environ.get("TENMON_API__HOST", api.get("host", "127.0.0.1"))
        port = os.environ.get("TENMON_API__PORT", api.get("port", 8470))
        return f"http://{host}:{port}"
    port = os.environ.get("TENMON_API__PORT")
    return f"http://127.0.0.1:{port}" if port else DEFAULT_URL


class ApiClient:
    def __init__(self, url: str, timeout_s: float = 10.0):
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def get(self, path: str, **query: Any) -> dict[str, Any]:
        qs = "&".join(f"{k}={urllib.request.quote(str(v))}" for k, v in query.items()
                      if v is not None)
        return self._call("GET", path + (f"?{qs}" if qs else ""), None)

    def post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._call("POST", path, body or {})

    def _call(self, method: str, path: str, body: dict | None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.url}/api/v1{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return json.loads(resp.read().decode())
        except urllib.error.HTTPError as exc:
            try:
                err = json.loads(exc.read().decode())["error"]
                raise ApiError(err["code"], err["message"], exc.code) from None
            except (ValueError, KeyError, TypeError):
                raise ApiError("http_error", f"{self.url}: HTTP {exc.code} {exc.reason}",
                               exc.code) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiError("not_running", f"no tenmon daemon answers at {self.url} ({reason}); "
                           "is it running? (`systemctl status tenmond`, or `make run` for the "
                           "simulated observatory)") from None
