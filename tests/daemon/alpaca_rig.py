"""A simulated observatory serving ASCOM Alpaca on loopback, for clients in the test's thread.

alpyca is a blocking client, so the observatory runs on an event loop in a thread of its own, as
in the daemon: that loop ticks the control loop (a FakeClock advanced ``tick_s`` per tick, as
fast as the machine allows with a short pause between ticks for requests), serves the real
Alpaca HTTP server on 127.0.0.1 (a free port) and answers discovery on a free UDP port.
Everything the test reads or does to the observatory directly goes through :meth:`call`, on
that loop's thread, between ticks.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from pathlib import Path

from tenmon.daemon.control_loop import tick_once

DATA = Path(__file__).resolve().parents[1] / "data" / "alpaca"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AlpacaRig:
    """``AlpacaRig(sim_rig_instance, **alpaca_overrides)``; ``address`` is ``127.0.0.1:PORT``."""

    def __init__(self, rig, *, pace_s: float = 0.002, **alpaca):
        self.rig = rig
        self.obs = rig.obs
        self.pace_s = pace_s
        self.cfg = self.obs.config.alpaca.model_copy(update={
            "enabled": True, "host": "127.0.0.1", "port": 0,
            "discovery_port": free_udp_port(), **alpaca})
        self.loop = asyncio.new_event_loop()
        self._stop = False
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.service = None
        self.ticks = 0
        self.thread = threading.Thread(target=self._run, name="alpaca-rig", daemon=True)
        self.thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the Alpaca rig did not start")
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._main())
        finally:
            self.loop.close()

    async def _main(self) -> None:
        from tenmon.daemon.api.alpaca import AlpacaService

        try:
            self.service = AlpacaService(self.obs, self.cfg)
            await self.service.start()
        except BaseException as exc:  # noqa: BLE001 - reported to the test's thread
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        clock, tick_s = self.obs.clock, self.obs.config.daemon.tick_s
        while not self._stop:
            clock.advance(tick_s)
            tick_once(self.obs)
            self.ticks += 1
            await asyncio.sleep(self.pace_s)
        await self.service.stop()

    # ------------------------------------------------------------------ from the test's thread

    @property
    def port(self) -> int:
        return self.service.port

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def call(self, fn, timeout: float = 30.0):
        """``fn()`` on the observatory's loop, between ticks; its result."""
        async def run():
            return fn()
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def wait(self, cond, what: str, wall_s: float = 120.0, every_s: float = 0.02):
        """Poll ``cond()`` (in the test's thread: an alpyca read, say) until it is true;
        fail naming ``what`` after ``wall_s`` wall seconds."""
        deadline = time.monotonic() + wall_s
        last = None
        while time.monotonic() < deadline:
            last = cond()
            if last:
                return last
            time.sleep(every_s)
        raise AssertionError(f"timed out waiting for {what} (last: {last!r})")

    def close(self) -> None:
        self._stop = True
        self.thread.join(30)


def _titles_as_text(node):
    """The document writes enum titles such as ``title: False`` unquoted, which YAML reads as
    a boolean (and the OpenAPI validator refuses); they are the names ``"False"``."""
    if isinstance(node, dict):
        return {k: (str(v) if k == "title" and not isinstance(v, (str, dict, list))
                    else _titles_as_text(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_titles_as_text(v) for v in node]
    return node


def _device_state_any_of(doc: dict) -> dict:
    """DeviceState's item ``Value`` is ``oneOf: [string, number, boolean, date-time string]``:
    a time (the TimeStamp every DeviceState carries) matches two of them, so ``oneOf`` can never
    hold. The document means "one of these types": read as ``anyOf``."""
    resp = doc.get("components", {}).get("responses", {}).get("DeviceStateResponse")
    if resp is not None:
        schema = resp["content"]["application/json"]["schema"]["allOf"][1]
        value = schema["properties"]["Value"]["items"]["properties"]["Value"]
        if "oneOf" in value:
            value["anyOf"] = value.pop("oneOf")
    return doc


def load_spec(name: str, base_url: str):
    """The official OpenAPI document ``name`` (tests/data/alpaca) for a server at
    ``base_url``; the document gives the path prefix only in its text, so it is added as
    ``servers``; enum titles YAML read as booleans are read as the text they are, and
    DeviceState's value types as ``anyOf`` (see :func:`_device_state_any_of`): the two places
    where the document as published cannot be used as it stands."""
    import yaml
    from openapi_core import OpenAPI

    doc = _titles_as_text(yaml.safe_load((DATA / name).read_text(encoding="utf-8")))
    doc = _device_state_any_of(doc)
    doc["servers"] = [{"url": base_url}]
    return OpenAPI.from_dict(doc)


class ResponseLog:
    """Every HTTP answer a ``requests`` session got (alpyca's ``rqs``), for validation."""

    def __init__(self):
        self.responses: list = []

    def hook(self, response, *args, **kwargs):
        self.responses.append(response)
        return response

    def attach(self, device) -> None:
        device.rqs.hooks.setdefault("response", []).append(self.hook)


def validate_all(spec, responses) -> int:
    """Validate each ``requests`` response (and its request) against ``spec``; return how many.
    Raises the validator's error on the first that does not conform."""
    from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

    for resp in responses:
        req = RequestsOpenAPIRequest(resp.request)
        try:
            spec.validate_response(req, RequestsOpenAPIResponse(resp))
        except Exception as exc:
            raise AssertionError(f"{resp.request.method} {resp.request.url} -> {resp.status_code}"
                                 f" {resp.text[:300]}: does not conform: {exc!r}") from exc
    return len(responses)


def envelope(resp) -> dict:
    return json.loads(resp.text)
