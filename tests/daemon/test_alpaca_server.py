"""The ASCOM Alpaca server driven by alpyca (the ASCOM Initiative's client) over real HTTP and
real UDP discovery on loopback, against the simulated observatory; every answer checked
against the official OpenAPI documents (tests/data/alpaca)."""

from __future__ import annotations

import base64
import sqlite3

import pytest
import requests

pytest.importorskip("alpaca", reason="alpyca is in the dev extra")
pytest.importorskip("openapi_core", reason="openapi-core is in the dev extra")

from alpaca import discovery, management  # noqa: E402
from alpaca.covercalibrator import CalibratorStatus, CoverCalibrator, CoverStatus  # noqa: E402
from alpaca.dome import Dome, ShutterState  # noqa: E402
from alpaca.exceptions import (AlpacaRequestException, InvalidOperationException,  # noqa: E402
                               InvalidValueException, NotConnectedException,
                               NotImplementedException)
from alpaca.observingconditions import ObservingConditions  # noqa: E402
from alpaca.safetymonitor import SafetyMonitor  # noqa: E402

from alpaca_rig import AlpacaRig, ResponseLog, load_spec, validate_all  # noqa: E402


@pytest.fixture
def alpaca_rig(sim_rig):
    made = []

    def make(rig=None, **alpaca):
        ar = AlpacaRig(rig or sim_rig(), **alpaca)
        made.append(ar)
        return ar

    yield make
    for ar in made:
        ar.close()


def _devices(ar, log: ResponseLog | None = None):
    devs = (Dome(ar.address, 0), CoverCalibrator(ar.address, 0), SafetyMonitor(ar.address, 0),
            ObservingConditions(ar.address, 0))
    for d in devs:
        if log is not None:
            log.attach(d)
    return devs


def _validate(ar, log: ResponseLog) -> int:
    spec = load_spec("AlpacaDeviceAPI_v1.yaml", f"{ar.url}/api/v1")
    return validate_all(spec, [r for r in log.responses if "/api/v1/" in r.url])


# ----------------------------------------------------------------------------- management


def test_management_api_and_discovery_on_loopback(alpaca_rig):
    ar = alpaca_rig()
    assert management.apiversions(ar.address) == [1]
    desc = management.description(ar.address)
    assert desc["ServerName"] == "tenmon" and "simulated" in desc["Location"]
    devices = management.configureddevices(ar.address)
    assert {(d["DeviceType"], d["DeviceNumber"]) for d in devices} == {
        ("Dome", 0), ("CoverCalibrator", 0), ("SafetyMonitor", 0), ("ObservingConditions", 0)}
    assert len({d["UniqueID"] for d in devices}) == 4
    # the same UniqueIDs after a restart of the Alpaca server (kept in the daemon's state)
    from tenmon.daemon.api.alpaca import AlpacaServer
    again = ar.call(lambda: {d.unique_id for d in AlpacaServer(ar.obs, ar.cfg).devices.values()})
    assert again == {d["UniqueID"] for d in devices}

    # the official Management API document accepts every answer
    spec = load_spec("AlpacaManagementAPI_v1.yaml", ar.url)
    answers = [requests.get(f"{ar.url}{p}", params={"ClientID": 7, "ClientTransactionID": 9},
                            timeout=10)
               for p in ("/management/apiversions", "/management/v1/description",
                         "/management/v1/configureddevices", "/setup",
                         "/setup/v1/dome/0/setup")]
    assert validate_all(spec, answers) == 5
    assert answers[0].json()["ClientTransactionID"] == 9
    sids = [a.json()["ServerTransactionID"] for a in answers[:3]]
    assert sids == sorted(sids) and len(set(sids)) == 3

    # real UDP discovery (alpyca's own broadcast) finds the server's HTTP port
    discovery.port = ar.cfg.discovery_port
    try:
        found = discovery.search_ipv4(numquery=1, timeout=1)
    finally:
        discovery.port = 32227
    assert ar.address in found
    assert ar.service.discovery.answered >= 1


# ----------------------------------------------------------------------------- Dome


def test_every_dome_member_with_its_errors(alpaca_rig):
    ar = alpaca_rig()
    log = ResponseLog()
    dome, *_ = _devices(ar, log)
    # information members answer without a connection; the rest say NotConnected
    assert dome.InterfaceVersion == 3 and dome.Name == "tenmon Dome"
    assert "dome" in dome.Description and dome.DriverVersion.count(".") == 1
    assert "tenmon" in " ".join(dome.DriverInfo) and dome.SupportedActions == []
    assert dome.Connected is False and dome.Connecting is False
    with pytest.raises(NotConnectedException):
        dome.Azimuth
    with pytest.raises(NotConnectedException):
        dome.OpenShutter()
    dome.Connect()
    assert dome.Connecting is False and dome.Connected is True
    # capabilities
    assert (dome.CanFindHome, dome.CanPark, dome.CanSetAltitude, dome.CanSetAzimuth,
            dome.CanSetPark, dome.CanSetShutter, dome.CanSlave, dome.CanSyncAzimuth) == (
        True, True, False, True, False, True, True, False)
    # what it cannot do
    for call in (lambda: dome.Altitude, lambda: dome.SetPark(), lambda: dome.SlewToAltitude(45),
                 lambda: dome.SyncToAzimuth(10), lambda: dome.Action("x"),
                 lambda: dome.CommandBlind("x", True), lambda: dome.CommandBool("x", True),
                 lambda: dome.CommandString("x", True)):
        with pytest.raises(NotImplementedException):
            call()
    # state at start: closed, at home (azimuth 0), not slewing
    assert dome.ShutterStatus == ShutterState.shutterClosed
    assert dome.AtHome is True and dome.AtPark is False and dome.Slewing is False
    assert dome.Slaved is False
    state = {d["Name"]: d["Value"] for d in dome.DeviceState}
    assert set(state) == {"AtHome", "AtPark", "Azimuth", "ShutterStatus", "Slewing", "TimeStamp"}
    assert state["TimeStamp"].startswith("2026-11-21T13:") and state["TimeStamp"].endswith("Z")
    # bad values
    for bad in (-1, 360, 400):
        with pytest.raises(InvalidValueException):
            dome.SlewToAzimuth(bad)
    # park, home, abort
    dome.Park()
    assert dome.Slewing is True
    ar.wait(lambda: not dome.Slewing, "the dome parked")
    assert dome.AtPark is True and abs(dome.Azimuth - 180) <= 1.0
    dome.SlewToAzimuth(120)
    ar.wait(lambda: dome.Slewing, "the slew started")
    dome.AbortSlew()
    ar.wait(lambda: not dome.Slewing, "the dome stopped")
    assert abs(dome.Azimuth - 120) > 1.0  # stopped on the way
    dome.FindHome()
    ar.wait(lambda: not dome.Slewing, "the dome at home")
    assert dome.AtHome is True
    # slaving: refused moves while slaved, AbortSlew ends it
    dome.Slaved = True
    assert dome.Slaved is True
    for call in (lambda: dome.SlewToAzimuth(10), dome.Park, dome.FindHome):
        with pytest.raises(InvalidOperationException, match="slaved"):
            call()
    dome.AbortSlew()
    assert dome.Slaved is False
    # open and close the shutter
    dome.OpenShutter()
    assert dome.ShutterStatus == ShutterState.shutterOpening and dome.Slewing is True
    ar.wait(lambda: dome.ShutterStatus == ShutterState.shutterOpen, "the shutter open")
    dome.CloseShutter()
    assert dome.ShutterStatus == ShutterState.shutterClosing
    ar.wait(lambda: dome.ShutterStatus == ShutterState.shutterClosed, "the shutter closed")
    dome.Disconnect()
    assert dome.Connected is False
    with pytest.raises(NotConnectedException):
        dome.ShutterStatus
    assert _validate(ar, log) > 50


@pytest.mark.parametrize("target", [90.0, 237.5, 11.0])
def test_a_dome_slewed_through_alpaca_lands_within_1_deg_of_the_true_azimuth(alpaca_rig,
                                                                             target):
    ar = alpaca_rig()
    dome = Dome(ar.address, 0)
    dome.Connected = True
    dome.SlewToAzimuth(target)
    ar.wait(lambda: dome.Slewing, "the slew started")
    ar.wait(lambda: not dome.Slewing, f"the dome at {target}")
    ar.wait(lambda: ar.call(lambda: abs(ar.obs.world.state.dome_speed_deg_s)) < 1e-3,
            "the dome at rest (coast over)")
    true_az = ar.call(lambda: ar.obs.world.state.dome_az_deg)
    err = (true_az - target + 180.0) % 360.0 - 180.0
    assert abs(err) <= 1.0, (target, true_az)
    # what Alpaca reports agrees with the world too
    assert abs((dome.Azimuth - true_az + 180.0) % 360.0 - 180.0) <= 1.0


def test_slaved_dome_follows_the_mount(alpaca_rig):
    ar = alpaca_rig()
    dome = Dome(ar.address, 0)
    dome.Connect()
    obs = ar.obs

    def goto():
        from tenmon.core.astro import lst_deg
        lst = lst_deg(obs.clock.now(), obs.config.site.longitude_deg)
        obs.mount_goto((lst - 40.0) % 360.0, 10.0)  # 40 deg west of the meridian: az ~ 230
    ar.call(goto)
    dome.Slaved = True
    ar.wait(lambda: ar.call(lambda: obs.mount.state.value) == "tracking", "the mount on target",
            wall_s=180)

    def off() -> float:
        from tenmon.core.astro import lst_deg, radec_to_altaz
        ra, dec = obs.mount.ra_deg, obs.mount.dec_deg
        _, az = radec_to_altaz(ra, dec, lst_deg(obs.clock.now(), obs.config.site.longitude_deg),
                               obs.config.site.latitude_deg)
        return abs((obs.world.state.dome_az_deg - az + 180) % 360 - 180)
    ar.wait(lambda: ar.call(off) <= 3.0 and not dome.Slewing, "the dome following the mount",
            wall_s=180)
    assert 180 < dome.Azimuth < 280


# ----------------------------------------------------------------------------- safety in charge


def test_rain_closes_a_shutter_opened_through_alpaca_and_shutterstatus_follows(alpaca_rig):
    ar = alpaca_rig()
    log = ResponseLog()
    dome, _cover, safety, weather = _devices(ar, log)
    for d in (dome, safety, weather):
        d.Connect()
    assert safety.IsSafe is True
    dome.OpenShutter()
    ar.wait(lambda: dome.ShutterStatus == ShutterState.shutterOpen, "the shutter open")
    ar.call(lambda: ar.obs.sim.set_weather("rain"))
    seen = [dome.ShutterStatus]
    ar.wait(lambda: seen.append(dome.ShutterStatus) or seen[-1] == ShutterState.shutterClosed,
            "the shutter closed by the supervisor")
    assert ShutterState.shutterClosing in seen  # it was seen closing on the way
    assert safety.IsSafe is False and weather.RainRate == 1.0
    state = {d["Name"]: d["Value"] for d in safety.DeviceState}
    assert state["IsSafe"] is False
    # while unsafe an open is refused with the reason; a close is always taken
    with pytest.raises(InvalidOperationException, match="rain"):
        dome.OpenShutter()
    dome.CloseShutter()
    # an emergency stop: refused, saying so
    ar.call(lambda: ar.obs.sim.set_weather("clear"))
    ar.call(lambda: ar.obs.emergency_stop("test"))
    with pytest.raises(InvalidOperationException, match="emergency"):
        dome.OpenShutter()
    with pytest.raises(InvalidOperationException, match="emergency"):
        dome.SlewToAzimuth(10)
    assert safety.IsSafe is False
    ar.call(lambda: ar.obs.resume())
    ar.wait(lambda: ar.call(lambda: ar.obs.verdict.safe and not ar.obs.supervisor.closing),
            "safe again, the supervisor's close finished")
    # clear again, but inside the reopen hold-off: refused with the time to go
    with pytest.raises(InvalidOperationException, match="hold-off"):
        dome.OpenShutter()
    assert _validate(ar, log) > 10


# ----------------------------------------------------------------------------- cover


def test_every_covercalibrator_member(alpaca_rig):
    ar = alpaca_rig()
    log = ResponseLog()
    _dome, cover, *_ = _devices(ar, log)
    assert cover.InterfaceVersion == 2
    with pytest.raises(NotConnectedException):
        cover.CoverState
    cover.Connected = True
    assert cover.CalibratorState == CalibratorStatus.NotPresent
    assert cover.CalibratorChanging is False
    for call in (lambda: cover.Brightness, lambda: cover.MaxBrightness,
                 lambda: cover.CalibratorOn(1), cover.CalibratorOff):
        with pytest.raises(NotImplementedException):
            call()
    assert cover.CoverState == CoverStatus.Closed and cover.CoverMoving is False
    cover.OpenCover()
    assert cover.CoverState == CoverStatus.Moving and cover.CoverMoving is True
    ar.wait(lambda: cover.CoverState == CoverStatus.Open, "the cover open")
    state = {d["Name"]: d["Value"] for d in cover.DeviceState}
    assert state["CoverState"] == 3 and state["CalibratorState"] == 0
    assert "Brightness" not in state
    cover.CloseCover()
    ar.wait(lambda: ar.call(lambda: ar.obs.world.state.cover_fraction) < 0.8, "closing begun")
    with pytest.raises(InvalidOperationException, match="never halted"):
        cover.HaltCover()  # a close is never halted
    ar.wait(lambda: cover.CoverState == CoverStatus.Closed, "the cover closed")
    cover.OpenCover()
    ar.wait(lambda: ar.call(lambda: ar.obs.world.state.cover_fraction) > 0.3, "opening begun")
    cover.HaltCover()
    assert cover.CoverMoving is False and cover.CoverState == CoverStatus.Unknown
    frac = ar.call(lambda: ar.obs.world.state.cover_fraction)
    assert 0.2 < frac < 0.95
    cover.CloseCover()
    ar.wait(lambda: cover.CoverState == CoverStatus.Closed, "the cover closed again")
    # unsafe: an open is refused
    ar.call(lambda: ar.obs.sim.set_weather("rain"))
    ar.wait(lambda: ar.call(lambda: not ar.obs.verdict.safe), "unsafe")
    with pytest.raises(InvalidOperationException, match="rain"):
        cover.OpenCover()
    assert _validate(ar, log) > 15


# ----------------------------------------------------------------------------- weather


def test_observingconditions_and_safetymonitor_members(alpaca_rig):
    ar = alpaca_rig()
    log = ResponseLog()
    _dome, _cover, safety, weather = _devices(ar, log)
    assert safety.IsSafe is False  # not connected: not safe, as the standard asks
    safety.Connect()
    assert safety.IsSafe is True and safety.InterfaceVersion == 3
    weather.Connect()
    assert weather.InterfaceVersion == 2
    assert weather.AveragePeriod == 0.0
    # alpyca has no AveragePeriod setter: its own PUT does what the setter would
    weather._put("averageperiod", AveragePeriod=0.0)
    for bad in (1.0, -1.0):
        with pytest.raises(InvalidValueException):
            weather._put("averageperiod", AveragePeriod=bad)
    ar.call(lambda: ar.obs.sim.set_weather("wind", 9.5))
    ar.wait(lambda: weather.WindSpeed == 9.5, "the wind reported")
    assert 0 <= weather.Humidity <= 100 and weather.RainRate == 0.0
    for name in ("CloudCover", "DewPoint", "Pressure", "SkyBrightness", "SkyQuality",
                 "SkyTemperature", "StarFWHM", "Temperature", "WindDirection", "WindGust"):
        with pytest.raises(NotImplementedException):
            getattr(weather, name)
        with pytest.raises(NotImplementedException):
            weather.SensorDescription(name)
        with pytest.raises(NotImplementedException):
            weather.TimeSinceLastUpdate(name)
    assert "wind" in weather.SensorDescription("windspeed")  # any case
    with pytest.raises(InvalidValueException):
        weather.SensorDescription("Gremlins")
    weather.Refresh()
    state = {d["Name"]: d["Value"] for d in weather.DeviceState}
    assert set(state) == {"Humidity", "RainRate", "WindSpeed", "TimeStamp"}
    # TimeSinceLastUpdate is honest: a station that stops reporting ages
    fresh = weather.TimeSinceLastUpdate("")
    assert 0 <= fresh < 1.0
    ar.call(lambda: ar.obs.sim.fault("weather-stale"))
    t0 = ar.call(lambda: ar.obs.clock.monotonic())
    ar.wait(lambda: ar.call(lambda: ar.obs.clock.monotonic()) - t0 > 30, "30 s of silence")
    age = weather.TimeSinceLastUpdate("WindSpeed")
    assert age >= 30
    ar.wait(lambda: safety.IsSafe is False, "stale weather judged unsafe", wall_s=180)
    assert _validate(ar, log) > 20


def test_a_value_before_any_reading_is_not_set(sim_rig):
    from tenmon.daemon.api.alpaca import AlpacaServer
    from tenmon.daemon.api.alpaca_devices import VALUE_NOT_SET, AlpacaError

    rig = sim_rig(start=False)  # the weather sensor has not reported yet
    assert rig.obs.weather.reading() is None
    weather = AlpacaServer(rig.obs).devices[("observingconditions", 0)]
    for read in (lambda: weather.value("WindSpeed"), weather.age_s):
        with pytest.raises(AlpacaError) as exc:
            read()
        assert exc.value.number == VALUE_NOT_SET
    with pytest.raises(AlpacaError) as exc:
        weather.value("Pressure")
    assert exc.value.number == 0x400


# ----------------------------------------------------------------------------- the wire


def test_transactions_parameters_and_http_errors(alpaca_rig):
    ar = alpaca_rig()
    base = f"{ar.url}/api/v1/dome/0"
    r = requests.put(f"{base}/connect", data={"clientid": "5", "clienttransactionid": "41"},
                     timeout=10)
    body = r.json()
    assert r.status_code == 200 and body["ErrorNumber"] == 0
    assert body["ClientTransactionID"] == 41 and body["ServerTransactionID"] >= 1
    # parameter names in any case, on GET and PUT
    r = requests.get(f"{base}/connected", params={"CLIENTID": "5", "ClientTransactionId": "42"},
                     timeout=10)
    assert r.json()["Value"] is True and r.json()["ClientTransactionID"] == 42
    r2 = requests.get(f"{base}/connected", params={"ClientID": "5"}, timeout=10)
    assert r2.json()["ServerTransactionID"] > r.json()["ServerTransactionID"]
    assert r2.json()["ClientTransactionID"] == 0  # none sent
    # another client (ClientID) is not connected by client 5's Connect
    r = requests.get(f"{base}/azimuth", params={"ClientID": "6"}, timeout=10)
    assert r.json()["ErrorNumber"] == 0x407
    for name in ("azimuth", "AZIMUTH", "AzImUtH"):
        r = requests.put(f"{base}/slewtoazimuth", data={"ClientID": "5", name: "45.5"},
                         timeout=10)
        assert r.status_code == 200 and r.json()["ErrorNumber"] == 0, r.text
    # a request that cannot be interpreted: HTTP 400 and a plain-text message
    for method, url, data in (
            ("PUT", f"{base}/slewtoazimuth", {"ClientID": "5"}),                # missing
            ("PUT", f"{base}/slewtoazimuth", {"ClientID": "5", "Azimuth": "east"}),
            ("PUT", f"{base}/slaved", {"ClientID": "5", "Slaved": "yes"}),
            ("GET", f"{ar.url}/api/v1/dome/1/azimuth", None),                   # no dome 1
            ("GET", f"{ar.url}/api/v1/telescope/0/altitude", None),
            ("GET", f"{base}/gremlins", None),
            ("GET", f"{ar.url}/api/v1/Dome/0/azimuth", None),                  # upper case
            ("GET", f"{base}/slewtoazimuth", None)):                            # a PUT member
        r = requests.request(method, url, data=data, timeout=10)
        assert r.status_code == 400, (method, url, r.status_code, r.text)
        assert r.headers["Content-Type"].startswith("text/plain") and r.text
    # a JSON body is not the standard's form
    r = requests.put(f"{base}/slewtoazimuth", json={"Azimuth": 10}, timeout=10)
    assert r.status_code == 400
    # the 400s validate against the official document too
    spec = load_spec("AlpacaDeviceAPI_v1.yaml", f"{ar.url}/api/v1")
    bad = requests.put(f"{base}/slewtoazimuth", data={"ClientID": "5",
                                                      "ClientTransactionID": "3"}, timeout=10)
    assert validate_all(spec, [bad]) == 1


def _audit_rows(ar) -> list[tuple]:
    ar.call(lambda: ar.obs.store.flush(5.0))
    with sqlite3.connect(ar.obs.store.path) as db:
        return db.execute("SELECT client, method, route, status, code, auth FROM audit "
                          "ORDER BY id").fetchall()


def test_commands_go_to_the_audit_trail(alpaca_rig):
    ar = alpaca_rig()
    dome = Dome(ar.address, 0)
    dome.Connect()
    dome.SlewToAzimuth(30)
    ar.call(lambda: ar.obs.sim.set_weather("rain"))
    ar.wait(lambda: ar.call(lambda: not ar.obs.verdict.safe), "unsafe")
    with pytest.raises(InvalidOperationException):
        dome.OpenShutter()
    dome.Azimuth  # a read: not audited
    rows = _audit_rows(ar)
    routes = [(r[1], r[2].split("?")[0], r[4]) for r in rows]
    assert ("PUT", "alpaca /api/v1/dome/0/connect", "ok") in routes
    assert ("PUT", "alpaca /api/v1/dome/0/slewtoazimuth", "ok") in routes
    assert ("PUT", "alpaca /api/v1/dome/0/openshutter", "ascom_0x40b") in routes
    assert not any("azimuth" == r[2].rsplit("/", 1)[-1] for r in rows)
    assert all(r[0] == "127.0.0.1" for r in rows)
    assert all(r[5] == "ok" for r in rows)  # a listed address: allowed (not flood-limited)
    # and the observatory's own event log says what was commanded
    msgs = ar.call(lambda: [e["message"] for e in ar.obs.store.events(limit=500)])
    assert any("slewing to 30.0" in m for m in msgs)


def test_who_may_command(alpaca_rig, sim_rig, tmp_path):
    # an address not in command_from: reads open, commands refused (InvalidOperation, why)
    ar = alpaca_rig(command_from=["10.1.2.0/24"])
    dome = Dome(ar.address, 0)
    dome.Connect()  # moves nothing: open to all
    assert dome.ShutterStatus == ShutterState.shutterClosed
    with pytest.raises(InvalidOperationException, match="command_from"):
        dome.OpenShutter()
    with pytest.raises(InvalidOperationException, match="command_from"):
        dome.CloseShutter()
    ar.close()

    # basic auth: without it HTTP 401 with a challenge, with it the command is done
    pw = tmp_path / "alpaca.pw"
    pw.write_text("s3cret\n")
    ar = alpaca_rig(sim_rig(), username="observer", password_file=pw)
    dome = Dome(ar.address, 0)
    dome.Connect()
    with pytest.raises(AlpacaRequestException) as exc:
        dome.SlewToAzimuth(20)
    assert exc.value.number == 401
    r = requests.put(f"{ar.url}/api/v1/dome/0/abortslew", auth=("observer", "wrong"), timeout=10)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic")
    dome.rqs.auth = ("observer", "s3cret")
    dome.SlewToAzimuth(20)
    assert dome.Slewing is True
    rows = _audit_rows(ar)
    assert [r[5] for r in rows if "slewtoazimuth" in r[2]] == ["missing", "ok"]
    assert any(r[5] == "wrong" and r[3] == 401 for r in rows)
    header = "Basic " + base64.b64encode(b"observer:s3cret").decode()
    r = requests.get(f"{ar.url}/api/v1/dome/0/connected", headers={"Authorization": header},
                     timeout=10)
    assert r.status_code == 200


# ----------------------------------------------------------------------------- the whole document

OUR_TYPES = ("dome", "covercalibrator", "safetymonitor", "observingconditions")
#: sample values by JSON type, for the required parameters of each documented member
SAMPLE = {"number": "10", "integer": "0", "boolean": "True", "string": "WindSpeed"}


def _members(doc: dict) -> list[tuple[str, str, str, dict]]:
    """(device type, method, member, parameters) for every member the Device API document
    defines for the four device types served here."""
    out = []
    for path, ops in doc["paths"].items():
        first, _num, member = path.strip("/").split("/")
        types = OUR_TYPES if first == "{device_type}" else (first,) if first in OUR_TYPES else ()
        for dtype in types:
            for method, op in ops.items():
                params: dict[str, str] = {}
                for p in op.get("parameters", []):
                    if "$ref" not in p and p.get("required") and p["in"] == "query":
                        params[p["name"]] = SAMPLE[p["schema"]["type"]]
                body = op.get("requestBody", {})
                if "$ref" in body:
                    body = doc["components"]["requestBodies"][body["$ref"].rsplit("/", 1)[1]]
                schema = body.get("content", {}).get("application/x-www-form-urlencoded", {}
                                                     ).get("schema", {})
                for part in schema.get("allOf", []):
                    for name in part.get("required", []):
                        params[name] = SAMPLE[part["properties"][name].get("type", "string")]
                out.append((dtype, method.upper(), member, params))
    return out


def test_every_documented_member_of_the_four_interfaces_answers_and_conforms(alpaca_rig):
    """A sweep over the official document: every member of Dome, CoverCalibrator,
    SafetyMonitor and ObservingConditions (and the common ones) is served (never the 400 of an
    unknown member), answers with a success or one of the standard's error numbers, and every
    answer validates against the document."""
    import yaml

    from alpaca_rig import DATA

    ar = alpaca_rig()
    doc = yaml.safe_load((DATA / "AlpacaDeviceAPI_v1.yaml").read_text(encoding="utf-8"))
    members = _members(doc)
    assert len({(t, m) for t, _, m, _ in members}) >= 90
    session = requests.Session()
    answers = []
    tid = 0
    # connected first, disconnect last, so the sweep reads connected values
    order = sorted(members, key=lambda x: (x[2] == "disconnect", x[2] != "connect"))
    for dtype, method, member, params in order:
        tid += 1
        params = {"ClientID": "1", "ClientTransactionID": str(tid), **params}
        url = f"{ar.url}/api/v1/{dtype}/0/{member}"
        r = (session.get(url, params=params, timeout=10) if method == "GET"
             else session.put(url, data=params, timeout=10))
        assert r.status_code == 200, (dtype, method, member, r.status_code, r.text)
        body = r.json()
        assert body["ClientTransactionID"] == tid
        assert body["ErrorNumber"] in (0, 0x400, 0x401, 0x402, 0x40B), (dtype, member, body)
        if body["ErrorNumber"] == 0x40B:  # only the slaved or closing refusals here
            assert "slaved" in body["ErrorMessage"] or "clos" in body["ErrorMessage"], body
        answers.append(r)
    spec = load_spec("AlpacaDeviceAPI_v1.yaml", f"{ar.url}/api/v1")
    assert validate_all(spec, answers) == len(members)
    served = {(t, m) for t, _, m, _ in members}
    assert {("dome", "slewtoazimuth"), ("covercalibrator", "haltcover"),
            ("safetymonitor", "issafe"), ("observingconditions", "timesincelastupdate"),
            ("dome", "devicestate"), ("safetymonitor", "connecting")} <= served


def test_clients_that_never_connect_with_connect_required_off(alpaca_rig):
    """Some clients (INDI's Alpaca dome and weather-safety drivers) read and command without
    ever sending Connect, and PUT without a body: [alpaca] connect_required = false serves
    them. With the default they get NotConnected and IsSafe false."""
    ar = alpaca_rig()
    r = requests.get(f"{ar.url}/api/v1/dome/0/shutterstatus", timeout=10)
    assert r.json()["ErrorNumber"] == 0x407
    r = requests.get(f"{ar.url}/api/v1/safetymonitor/0/issafe", timeout=10)
    assert r.json()["ErrorNumber"] == 0 and r.json()["Value"] is False
    ar.close()

    ar = alpaca_rig(connect_required=False)
    r = requests.get(f"{ar.url}/api/v1/dome/0/shutterstatus", timeout=10)
    assert r.json() == {"Value": 1, "ClientTransactionID": 0,
                        "ServerTransactionID": r.json()["ServerTransactionID"],
                        "ErrorNumber": 0, "ErrorMessage": ""}
    assert requests.get(f"{ar.url}/api/v1/safetymonitor/0/issafe",
                        timeout=10).json()["Value"] is True
    r = requests.put(f"{ar.url}/api/v1/dome/0/openshutter", timeout=10)  # no body at all
    assert r.json()["ErrorNumber"] == 0
    ar.wait(lambda: requests.get(f"{ar.url}/api/v1/dome/0/shutterstatus",
                                 timeout=10).json()["Value"] == 2, "opening")
