"""A small HTTP client for the daemon's API (stdlib only, so the CLI starts fast), and where the CLI
finds the daemon's address and its API token."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from tenmon.core.errors import ApiError

DEFAULT_URL = "http://127.0.0.1:8470"
DEFAULT_CONFIG = Path("/etc/tenmon/tenmon.toml")
TOKEN_FILE_NAME = "api.token"  # as tenmon.daemon.api.access.TOKEN_FILE_NAME


def _site_config(config: str | None) -> tuple[Path, dict[str, Any]] | None:
    """The config the CLI reads: ``--config``, else /etc/tenmon/tenmon.toml when it exists.

    Raises:
        ApiError: ``bad_config`` for a config that cannot be read or parsed.
    """
    path = Path(config) if config else DEFAULT_CONFIG
    if not (config or path.is_file()):
        return None
    import tomllib

    try:
        return path, tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ApiError("bad_config", f"{path}: cannot read the API settings: {exc}") from None


def resolve_url(url: str | None = None, config: str | None = None) -> str:
    """The daemon's URL: ``--url``, else $TENMON_URL, else the config file's [api], else default.

    The config file is ``--config`` or, when readable, /etc/tenmon/tenmon.toml.
    """
    if url:
        return url.rstrip("/")
    if os.environ.get("TENMON_URL"):
        return os.environ["TENMON_URL"].rstrip("/")
    found = _site_config(config)
    if found is not None:
        api = found[1].get("api", {})
        host = os.environ.get("TENMON_API__HOST", api.get("host", "127.0.0.1"))
        port = os.environ.get("TENMON_API__PORT", api.get("port", 8470))
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"  # bound to every address: this machine reaches it on loopback
        if ":" in str(host) and not str(host).startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{port}"
    port = os.environ.get("TENMON_API__PORT")
    return f"http://127.0.0.1:{port}" if port else DEFAULT_URL


@dataclass
class Token:
    """The API token the CLI sends (``value`` None when none was found) and where it looked."""

    value: str | None
    where: str


def _env_or(env: Mapping[str, str], name: str, table: Mapping[str, Any], key: str) -> Any:
    return env[name] if env.get(name) else table.get(key)


def resolve_token(token: str | None = None, config: str | None = None,
                  env: Mapping[str, str] | None = None) -> Token:
    """The API token: ``--token``, else $TENMON_TOKEN, else as the daemon finds it.

    As the daemon: the variable named by ``[api] token_env``, else the file ``[api] token_file``,
    else ``api.token`` in ``[paths] data_dir``; from ``--config``, else /etc/tenmon/tenmon.toml
    when it exists, else the packaged simulated observatory's config (``make run``: data in
    ``var/tenmon-sim`` under the directory it was started in). ``TENMON_API__TOKEN_ENV``,
    ``TENMON_API__TOKEN_FILE`` and ``TENMON_PATHS__DATA_DIR`` override as they do for the daemon.
    A file that cannot be read gives no token (the daemon's 401 then says where it is).
    """
    env = os.environ if env is None else env
    if token:
        return Token(token.strip(), "--token")
    if env.get("TENMON_TOKEN"):
        return Token(env["TENMON_TOKEN"].strip(), "$TENMON_TOKEN")
    found = _site_config(config)
    if found is None:
        import tomllib
        from importlib import resources

        sim = Path(str(resources.files("tenmon.config").joinpath("simulated.toml")))
        try:
            data = tomllib.loads(sim.read_text())
        except (OSError, tomllib.TOMLDecodeError):
            data = {}
    else:
        data = found[1]
    api, paths = data.get("api", {}), data.get("paths", {})
    var = _env_or(env, "TENMON_API__TOKEN_ENV", api, "token_env")
    if var:
        value = env.get(str(var), "").strip()
        return Token(value or None, f"${var}")
    file = _env_or(env, "TENMON_API__TOKEN_FILE", api, "token_file")
    if not file:
        data_dir = _env_or(env, "TENMON_PATHS__DATA_DIR", paths, "data_dir") or "/var/lib/tenmon"
        file = Path(str(data_dir)) / TOKEN_FILE_NAME
    path = Path(str(file)).absolute()
    try:
        value = path.read_text(encoding="ascii").strip()
    except PermissionError:
        return Token(None, f"{path} (not readable by this user: run as the daemon's user or "
                           "root, or pass --token / $TENMON_TOKEN)")
    except (OSError, UnicodeDecodeError):
        return Token(None, f"{path} (not there)")
    return Token(value or None, str(path))


class ApiClient:
    """Calls the daemon's API; sends the token (``Authorization: Bearer``) when it has one."""

    def __init__(self, url: str, timeout_s: float = 10.0, token: Token | str | None = None):
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.token = Token(token, "--token") if isinstance(token, str) else token

    def get(self, path: str, **query: Any) -> dict[str, Any]:
        qs = "&".join(f"{k}={urllib.request.quote(str(v))}" for k, v in query.items()
                      if v is not None)
        return self._call("GET", path + (f"?{qs}" if qs else ""), None)

    def post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._call("POST", path, body or {})

    def _call(self, method: str, path: str, body: dict | None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.token is not None and self.token.value:
            headers["Authorization"] = f"Bearer {self.token.value}"
        req = urllib.request.Request(f"{self.url}/api/v1{path}", data=data, method=method,
                                     headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return json.loads(resp.read().decode())
        except urllib.error.HTTPError as exc:
            try:
                err = json.loads(exc.read().decode())["error"]
                code, message = err["code"], err["message"]
            except (ValueError, KeyError, TypeError):
                raise ApiError("http_error", f"{self.url}: HTTP {exc.code} {exc.reason}",
                               exc.code) from None
            if exc.code == 401 and self.token is not None:
                message += (f" [this CLI sent the token from {self.token.where}]"
                            if self.token.value else
                            f" [this CLI found no token: looked in {self.token.where}]")
            raise ApiError(code, message, exc.code) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiError("not_running", f"no tenmon daemon answers at {self.url} ({reason}); "
                           "is it running? (`systemctl status tenmond`, or `make run` for the "
                           "simulated observatory)") from None


def client_for(args, timeout_s: float = 10.0) -> ApiClient:
    """The client of a CLI command's ``--url``, ``--config`` and ``--token``."""
    config = getattr(args, "config", None)
    return ApiClient(resolve_url(getattr(args, "url", None), config), timeout_s=timeout_s,
                     token=resolve_token(getattr(args, "token", None), config))
