"""Who may use the HTTP API: the API token and the Host/Origin checks.

The token: the environment variable named by ``api.token_env``, else the file ``api.token_file``,
else ``<data_dir>/api.token``; a missing file is created at the first start with a random token
(``secrets.token_urlsafe(32)``), mode 0600, written to a temporary file and linked into place
(never half-written, never overwriting a token another process just made). The token's value is
never logged. Requests present it as ``Authorization: Bearer TOKEN``; it is compared in constant
time (``hmac.compare_digest``). Every command needs it; reads need it when the API is bound to an
address other machines can reach, and the audit trail always.

Host and Origin (against DNS rebinding and cross-site requests from a browser): a request's
``Host`` must name the daemon (localhost, 127.0.0.1, [::1], the bind address, the address the
request arrived on, or a name in ``api.allowed_hosts``) with the port it listens on (any port for
``allowed_hosts`` names, which may sit behind a proxy); an ``Origin`` header, when present, must
name the same. Anything else is refused (403) before any handler runs.

A token that cannot be had (unreadable file, empty variable) does not stop the daemon: safety
never waits on the API. Commands are then refused (503, saying why) and an alarm is recorded.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

from tenmon.config.models import ApiConfig

log = logging.getLogger(__name__)

TOKEN_FILE_NAME = "api.token"
MIN_TOKEN_CHARS = 16
_BUILTIN_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_ANY_ADDRESS = frozenset({"", "0.0.0.0", "::"})


@dataclass
class ApiToken:
    """Where the token is and what it is (``value`` None when it cannot be had: ``problem``)."""

    where: str
    value: bytes | None = None
    problem: str | None = None
    created: bool = False
    warning: str | None = None


def default_token_path(api: ApiConfig, data_dir: Path | str) -> Path:
    """The token file the daemon uses (and the CLI reads) unless ``token_env`` is set."""
    return Path(api.token_file) if api.token_file is not None else Path(data_dir) / TOKEN_FILE_NAME


def _check_text(text: str, where: str) -> tuple[bytes | None, str | None]:
    token = text.strip()
    if len(token) < MIN_TOKEN_CHARS:
        return None, f"the API token in {where} is shorter than {MIN_TOKEN_CHARS} characters"
    if not all(33 <= ord(c) < 127 for c in token):
        return None, (f"the API token in {where} has spaces or characters that an HTTP header "
                      "cannot carry")
    return token.encode("ascii"), None


def create_token_file(path: Path) -> str:
    """Write a new random token to ``path`` (mode 0600) atomically; return it.

    Raises:
        FileExistsError: another process created ``path`` first (read that one).
        OSError: the directory cannot be written.
    """
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, (token + "\n").encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, path)  # fails if a token is already there: never overwrite one
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
    try:
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return token


def load_token(api: ApiConfig, data_dir: Path | str,
               env: Mapping[str, str] | None = None) -> ApiToken:
    """The API token for this configuration, creating the file on the first start.

    Never raises: a token that cannot be had is an :class:`ApiToken` with ``problem`` set.
    """
    env = os.environ if env is None else env
    if api.token_env:
        where = f"the environment variable ${api.token_env}"
        text = env.get(api.token_env, "")
        if not text.strip():
            return ApiToken(where, problem=f"api.token_env names ${api.token_env}, which is not "
                            "set (or empty) in the daemon's environment")
        value, problem = _check_text(text, where)
        return ApiToken(where, value=value, problem=problem)
    path = default_token_path(api, data_dir).absolute()
    where = str(path)
    created = False
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        try:
            text = create_token_file(path)
            created = True
        except FileExistsError:
            try:
                text = path.read_text(encoding="ascii")
            except (OSError, UnicodeDecodeError) as exc:
                return ApiToken(where, problem=f"cannot read the API token {path}: {exc}")
        except OSError as exc:
            return ApiToken(where, problem=f"cannot create the API token {path}: "
                            f"{exc.strerror or exc}")
    except (OSError, UnicodeDecodeError) as exc:
        return ApiToken(where, problem=f"cannot read the API token {path}: "
                        f"{getattr(exc, 'strerror', None) or exc}")
    value, problem = _check_text(text, where)
    warning = None
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o007 or mode & 0o020:
            warning = (f"the API token {path} is readable or writable by other users (mode "
                       f"{mode:04o}): any of them can command the observatory; "
                       f"chmod 600 {path}")
    except OSError:
        pass
    return ApiToken(where, value=value, problem=problem, created=created, warning=warning)


def _split_host(text: str) -> tuple[str, int | None] | None:
    """``("name", port)`` of a Host header (``[::1]:8470``, ``localhost``); None if malformed."""
    text = text.strip()
    if not text or any(c in text for c in " /@?#\\"):
        return None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        name, rest = text[1:end], text[end + 1:]
        if rest and not rest.startswith(":"):
            return None
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        name, port_text = text.split(":")
    elif ":" in text:
        return None  # a bare IPv6 address must be in brackets
    else:
        name, port_text = text, None
    port = None
    if port_text is not None:
        if not port_text.isdigit() or len(port_text) > 5:
            return None
        port = int(port_text)
    return name.lower().rstrip("."), port


class ApiAccess:
    """The checks of every request, for an API bound as ``api`` says."""

    def __init__(self, api: ApiConfig, token: ApiToken):
        self.api = api
        self.token = token
        self.reads_need_token = not api.loopback
        bind = api.host.strip().strip("[]").lower().rstrip(".")
        self._names = set(_BUILTIN_NAMES) | ({bind} if bind not in _ANY_ADDRESS else set())
        self._extra = set(api.allowed_hosts)

    # ------------------------------------------------------------------ Host / Origin

    def _own(self, name: str, port: int | None, local: tuple[str | None, int | None]) -> bool:
        local_ip, local_port = local
        if name in self._extra:
            return True
        names = self._names | ({local_ip.lower()} if local_ip else set())
        if name not in names:
            return False
        return port == (local_port if local_port is not None else self.api.port)

    def refusal(self, headers: Mapping[str, str], local: tuple[str | None, int | None]
                ) -> str | None:
        """Why a request with these headers, arrived on ``local`` (ip, port), is refused;
        None when its Host (and Origin, if any) name this daemon."""
        host = headers.get("Host")
        if host is None:
            return "the request has no Host header"
        parsed = _split_host(host)
        if parsed is None or not self._own(*parsed, local):
            return (f"Host {host[:80]!r} is not this daemon's (use localhost or 127.0.0.1 with "
                    "its port, or add the name to api.allowed_hosts)")
        origin = headers.get("Origin")
        if origin is not None:
            try:
                u = urlsplit(origin.strip())
                name = (u.hostname or "").rstrip(".")
                port = u.port or {"http": 80, "https": 443}.get(u.scheme)
                ok = u.scheme in ("http", "https") and bool(name) and not u.path.strip("/") \
                    and self._own(name, port, local)
            except ValueError:
                ok = False
            if not ok:
                return (f"Origin {origin[:80]!r} is not this daemon's: the API takes no "
                        "commands from other web sites")
        return None

    # ------------------------------------------------------------------ token

    def check_token(self, authorization: str | None) -> tuple[str, str | None]:
        """``(outcome, message)`` of an ``Authorization`` header: ``ok``, ``missing``,
        ``wrong`` or ``unavailable`` (the daemon has no token); a message unless ``ok``."""
        if self.token.value is None:
            return "unavailable", (f"the API has no token, so it takes no commands: "
                                   f"{self.token.problem}")
        scheme, _, given = (authorization or "").strip().partition(" ")
        if not authorization:
            return "missing", (f"this needs the API token (Authorization: Bearer TOKEN); it is in "
                               f"{self.token.where}, readable by the daemon's user. The CLI reads "
                               "it from there, or from --token / $TENMON_TOKEN")
        if scheme.lower() != "bearer" or not given.strip():
            return "wrong", ("the Authorization header must be 'Bearer TOKEN'; the token is in "
                             f"{self.token.where}")
        try:
            given_b = given.strip().encode("ascii")
        except UnicodeEncodeError:
            given_b = b""
        # digests of equal length: the comparison takes the same time whatever was sent
        if not hmac.compare_digest(hashlib.sha256(given_b).digest(),
                                   hashlib.sha256(self.token.value).digest()):
            return "wrong", (f"wrong API token; the daemon's is in {self.token.where} (another "
                             "daemon's token, or an old one?)")
        return "ok", None


__all__ = ["ApiAccess", "ApiToken", "load_token", "create_token_file", "default_token_path",
           "TOKEN_FILE_NAME", "MIN_TOKEN_CHARS"]
