"""alpyca on the wire, bounded: every HTTP call with a timeout, every failure one typed error.

Two things of alpyca (3.1) are changed here, for every device tenmon builds:

* alpyca holds one class-wide lock (``Device._ctid_lock``) for the whole of every HTTP request,
  so one slow server (or one 60 MB image download) stalls every other Alpaca device of the
  process; here the lock is held only to take a transaction number;
* alpyca's image download (``ImageArray``) has no timeout at all; here the download is bounded
  as a whole (``download_timeout_s``), not only per socket read.

Property reads and method calls keep alpyca's names (``cam.CCDTemperature``,
``tel.SlewToCoordinatesAsync(...)``); :func:`call` runs one and turns whatever goes wrong into
the tenmon error that says what it was, naming the device and its server:

=====================================  ================================================
what happened                          raised
=====================================  ================================================
connection refused, host unreachable   DeviceDisconnected (DeviceNotFound at connect)
no answer within the timeout           DeviceTimeout
ASCOM 0x407 NotConnected               DeviceDisconnected ("the device is not connected")
ASCOM 0x400..0x4FF, 0x500..0xFFF       DeviceError with the number and ASCOM's name
HTTP 4xx/5xx, a reply that is not JSON ProtocolError
=====================================  ================================================
"""

from __future__ import annotations

import time
from typing import Callable, TypeVar

import requests
from alpaca import exceptions as ax
from alpaca.device import Device

from tenmon.core.errors import (DeviceDisconnected, DeviceError, DeviceNotFound, DeviceTimeout,
                           ProtocolError)

T = TypeVar("T")


class WireTimeout(DeviceTimeout):
    """The server did not answer one HTTP call in time (the link, not a motion)."""

#: ASCOM's reserved error numbers and their names (Alpaca Device API, "Error Numbers").
ASCOM_ERRORS = {
    0x400: "NotImplemented", 0x401: "InvalidValue", 0x402: "ValueNotSet",
    0x407: "NotConnected", 0x408: "Parked", 0x409: "Slaved", 0x40B: "InvalidOperation",
    0x40C: "ActionNotImplemented", 0x40E: "OperationCancelled",
}

#: alpyca's exception classes -> the ASCOM number they carry.
_NUMBERED = (ax.NotImplementedException, ax.InvalidValueException, ax.ValueNotSetException,
             ax.NotConnectedException, ax.ParkedException, ax.SlavedException,
             ax.InvalidOperationException, ax.ActionNotImplementedException,
             ax.OperationCancelledException, ax.DriverException)


def ascom_name(number: int) -> str:
    """ASCOM's name of an error number (``DriverError`` for 0x500..0xFFF)."""
    if number in ASCOM_ERRORS:
        return ASCOM_ERRORS[number]
    if 0x500 <= number <= 0xFFF:
        return "DriverError"
    return "UnknownError"


class _Bounded:
    """Mixed in before an alpyca device class: bounded, unserialised HTTP (see the module)."""

    tenmon_timeout_s: float = 5.0
    tenmon_download_timeout_s: float = 120.0

    def _tenmon_ids(self) -> dict[str, str]:
        with Device._ctid_lock:  # only to number the transaction, not for the request
            tid = Device._client_trans_id
            Device._client_trans_id += 1
        return {"ClientTransactionID": str(tid), "ClientID": str(Device._client_id)}

    def _tenmon_headers(self) -> dict[str, str]:
        addr = self.address
        if addr.startswith("[") and not addr.startswith("[::1]"):
            return {"Host": f'{addr.split("%")[0]}]'}
        return {}

    def _get(self, attribute: str, tmo: float | None = None, **data):  # noqa: ARG002
        params = self._tenmon_ids()
        params.update(data)
        r = self.rqs.get(f"{self.base_url}/{attribute}", params=params,
                         timeout=self.tenmon_timeout_s, headers=self._tenmon_headers())
        self._Device__check_error(r)
        return r.json()["Value"]

    def _put(self, attribute: str, tmo: float | None = None, **data):  # noqa: ARG002
        params = self._tenmon_ids()
        params.update(data)
        r = self.rqs.put(f"{self.base_url}/{attribute}", data=params,
                         timeout=self.tenmon_timeout_s, headers=self._tenmon_headers())
        self._Device__check_error(r)
        return r.json()

    def _fetch_imagedata_response(self, attribute: str, **data) -> requests.Response:
        params = self._tenmon_ids()
        params.update(data)
        headers = {"accept": "application/imagebytes", **self._tenmon_headers()}
        deadline = time.monotonic() + self.tenmon_download_timeout_s
        r = self.rqs.get(f"{self.base_url}/{attribute}", params=params, headers=headers,
                         timeout=self.tenmon_timeout_s, stream=True)
        try:
            chunks = []
            for chunk in r.iter_content(chunk_size=1 << 20):
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise requests.Timeout(f"image download took longer than "
                                           f"{self.tenmon_download_timeout_s:g} s")
            r._content = b"".join(chunks)  # what alpyca reads as response.content
            r._content_consumed = True
        finally:
            r.close()
        if r.status_code not in range(200, 204):
            raise ax.AlpacaRequestException(r.status_code, f"{r.reason}: {r.text[:200]} "
                                            f"(URL {r.url})")
        return r


_CLASSES: dict[type, type] = {}


def bounded(cls: type[T], address: str, device_number: int, *, timeout_s: float,
            download_timeout_s: float = 120.0) -> T:
    """An alpyca device of class ``cls`` (``alpaca.camera.Camera``...) whose every HTTP call is
    bounded by ``timeout_s`` (an image download by ``download_timeout_s`` in all)."""
    sub = _CLASSES.get(cls)
    if sub is None:
        sub = _CLASSES[cls] = type(f"Bounded{cls.__name__}", (_Bounded, cls), {})
    dev = sub(address, device_number)
    dev.tenmon_timeout_s = float(timeout_s)
    dev.tenmon_download_timeout_s = float(download_timeout_s)
    return dev


def wire_error(kind: str, label: str, what: str, exc: BaseException, *, connecting: bool = False
               ) -> DeviceError:
    """The tenmon error for ``exc`` raised by alpyca while doing ``what`` (see the module's
    table). ``kind`` is the config's device name (``camera``), ``label`` says which device on
    which server (``Alpaca camera 0 at 127.0.0.1:11111``)."""
    if isinstance(exc, DeviceError):
        return exc
    if isinstance(exc, requests.Timeout):
        return WireTimeout(kind, f"{label}: no answer to {what}: {_short(exc)}")
    if isinstance(exc, requests.ConnectionError):
        cls = DeviceNotFound if connecting else DeviceDisconnected
        return cls(kind, f"{label}: server not reachable ({what}): {_reason(exc)}")
    if isinstance(exc, ax.NotConnectedException):
        return DeviceDisconnected(kind, f"{label}: the device is not connected on its server "
                                  f"({what}): {exc.message} (ASCOM 0x407 NotConnected)")
    if isinstance(exc, _NUMBERED):
        n = int(getattr(exc, "number", 0))
        return DeviceError(kind, f"{label}: {what} failed: {exc.message} "
                           f"(ASCOM 0x{n:X} {ascom_name(n)})")
    if isinstance(exc, ax.AlpacaRequestException):
        return ProtocolError(kind, f"{label}: {what}: HTTP {exc.number}: {_short(exc)}")
    if isinstance(exc, (ValueError, KeyError, TypeError)):  # a reply that is not Alpaca JSON
        return ProtocolError(kind, f"{label}: {what}: the reply is not Alpaca "
                             f"({type(exc).__name__}: {_short(exc)})")
    if isinstance(exc, requests.RequestException):
        return DeviceDisconnected(kind, f"{label}: {what}: {_short(exc)}")
    return DeviceError(kind, f"{label}: {what}: {type(exc).__name__}: {_short(exc)}")


def call(kind: str, label: str, what: str, fn: Callable[[], T], *, connecting: bool = False
         ) -> T:
    """Run ``fn`` (one alpyca call); raise :func:`wire_error`'s error if it fails. Blocking:
    worker threads and ``connect()`` only."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - every failure becomes one typed error
        raise wire_error(kind, label, what, exc, connecting=connecting) from exc


def optional(kind: str, label: str, what: str, fn: Callable[[], T]) -> T | None:
    """Like :func:`call`, but a property the device does not implement (0x400, or 0x40C from
    servers that use it so) is ``None``."""
    try:
        return fn()
    except (ax.NotImplementedException, ax.ActionNotImplementedException):
        return None
    except Exception as exc:  # noqa: BLE001
        raise wire_error(kind, label, what, exc) from exc


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _reason(exc: BaseException) -> str:
    text = str(exc)
    for word in ("Connection refused", "Name or service not known", "No route to host",
                 "Network is unreachable", "Connection reset", "Remote end closed",
                 "timed out"):
        if word.lower() in text.lower():
            return word.lower()
    return _short(exc)


def is_link_error(exc: BaseException) -> bool:
    """The server or the device went away (as opposed to a refused command)."""
    return isinstance(exc, (DeviceDisconnected, WireTimeout, DeviceNotFound, ProtocolError))


__all__ = ["ASCOM_ERRORS", "WireTimeout", "ascom_name", "bounded", "call", "is_link_error", "optional",
           "wire_error"]
