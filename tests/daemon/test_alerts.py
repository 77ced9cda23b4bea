"""Alerts: classification, real delivery (aiosmtpd, an HTTP receiver), rate limit with a digest,
retries, a hanging mail server that must not delay the control tick, and no network at import."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import time

import pytest
from alert_rigs import HangingSmtp, HttpReceiver, SmtpServer, wait_for

from tenmon.daemon.control_loop import tick_once
from tenmon.core.clock import FakeClock
from tenmon.config.models import AlertsConfig
from tenmon.daemon.alerts import AlertManager, alert_kind

pytest.importorskip("apprise")
pytest.importorskip("aiosmtpd")


def _event(level="alarm", kind="safety", message="x", **data):
    return {"time_utc": "2026-11-21T13:00:00.000+00:00", "level": level, "kind": kind,
            "message": message, "data": data}


@pytest.fixture
def smtp():
    s = SmtpServer()
    yield s
    s.stop()


@pytest.fixture
def http():
    h = HttpReceiver()
    yield h
    h.stop()


def _manager(urls, clock=None, **kw):
    settings = AlertsConfig(urls=urls, **{"retry_delay_s": 0.05, "timeout_s": 5.0, **kw})
    m = AlertManager(settings, site_name="Nishi-Harima test", clock=clock or FakeClock())
    assert m.start() == []
    return m


# --------------------------------------------------------------------------- what is alerted


@pytest.mark.parametrize(("event", "min_level", "kind"), [
    (_event("alarm", "safety", "SAFE STATE NOT REACHED after 2 retries: slit open"), "alarm",
     "safe-state-not-reached"),
    (_event("alarm", "safety", "cannot close slit: board lost (will retry)"), "alarm", "safety"),
    (_event("alarm", "storage", "database is full"), "alarm", "storage"),
    (_event("alarm", "sensor", "weather sensor lost"), "alarm", "sensor"),
    (_event("warning", "reconcile", "the previous run ended uncleanly (crash, kill or power "
            "loss)"), "alarm", "unclean-restart"),
    (_event("warning", "safety", "unsafe: rain"), "alarm", None),
    (_event("warning", "safety", "unsafe: rain"), "warning", "safety"),
    (_event("info", "daemon", "API listening"), "warning", None),
    (_event("error", "frame", "pool failed"), "alarm", None),
    (_event("error", "frame", "pool failed"), "error", "frame"),
    (_event("info", "weather", "note", alert=True), "alarm", "weather"),
    (_event("alarm", "alerts", "delivery failed"), "warning", None),
])
def test_what_is_alerted(event, min_level, kind):
    assert alert_kind(event, min_level) == kind


# --------------------------------------------------------------------------- the listener contract


def test_listeners_see_every_event_before_the_store_and_cannot_break_emit(sim_rig):
    rig = sim_rig()
    obs = rig.obs
    seen = []

    def bad(event):
        raise RuntimeError("a listener bug")

    obs.event_listeners += [bad, seen.append]
    obs.emit("alarm", "test", "one", where="here")
    assert seen[-1]["message"] == "one" and seen[-1]["level"] == "alarm"
    assert seen[-1]["kind"] == "test" and seen[-1]["data"] == {"where": "here"}
    assert set(seen[-1]) == {"time_utc", "level", "kind", "message", "data"}
    assert rig.events()[-1]["message"] == "one"  # stored although a listener raised
    # before the store: with the store failing outright, emit neither raises nor keeps the
    # event from the listener
    def broken(*args, **kwargs):
        raise RuntimeError("the store is gone")

    obs.store.add_event = broken
    obs.emit("alarm", "storage", "the disk is gone")
    assert seen[-1]["message"] == "the disk is gone"


# --------------------------------------------------------------------------- real delivery


def test_alarm_reaches_a_real_smtp_server(sim_rig, smtp):
    rig = sim_rig()
    m = _manager([smtp.url()])
    rig.obs.event_listeners.append(m.listener)
    try:
        rig.obs.emit("alarm", "storage", "database or disk is full: events kept in memory")
        rig.obs.emit("info", "daemon", "not for a person")
        assert wait_for(lambda: smtp.messages, 20), "no mail arrived"
    finally:
        m.stop(5)
    assert len(smtp.messages) == 1
    msg = smtp.messages[0]
    text = SmtpServer.text(msg)
    assert "database or disk is full" in text
    assert "Nishi-Harima test" in str(msg["Subject"]) and "ALARM" in str(msg["Subject"])
    assert smtp.envelopes[0].rcpt_tos == ["ops@example.org"]
    assert m.status()["targets"][0]["sent"] == 1


def test_safe_state_not_reached_is_alerted_from_the_supervisor(sim_rig, http):
    """The real path: slit stalled + rain -> the supervisor's retries run out -> an alert."""
    rig = sim_rig()
    obs = rig.obs
    m = _manager([http.url()])
    obs.event_listeners.append(m.listener)
    try:
        obs.slit_open()
        rig.run(30)  # half open
        obs.sim.fault("slit-stall")
        obs.sim.set_weather("rain")
        rig.run(900, until=lambda: obs.supervisor.alarmed)
        assert obs.supervisor.alarmed
        assert wait_for(lambda: [p for p in http.posts if "SAFE STATE NOT REACHED"
                                 in p.get("message", "")], 20)
    finally:
        m.stop(5)
    post = [p for p in http.posts if "SAFE STATE NOT REACHED" in p["message"]][0]
    assert "safe-state-not-reached" in post["title"] and post["type"] == "failure"


def test_unclean_restart_is_alerted(tmp_path, http):
    from tenmon.config.loader import load_config, simulated_config_path
    from tenmon.daemon.compose import build_observatory

    env = {"TENMON_PATHS__DATA_DIR": str(tmp_path / "d"),
           "TENMON_SIM__START_UTC": '"2026-11-21T13:00:00Z"'}
    cfg = load_config(simulated_config_path(), env=env)
    first = build_observatory(cfg, fresh=True)
    first.start()
    first.stop(clean=False)  # as after a crash: the "running" mark stays
    first.store.close()
    second = build_observatory(cfg)
    m = _manager([http.url()])
    second.event_listeners.append(m.listener)
    try:
        second.start()
        assert wait_for(lambda: http.posts, 20)
    finally:
        m.stop(5)
        second.stop()
    assert any("ended uncleanly" in p["message"] and "unclean-restart" in p["title"]
               for p in http.posts)


def test_rate_limit_holds_back_and_sends_a_digest(http):
    clock = FakeClock()
    m = _manager([http.url()], clock=clock, rate_limit_min=15)
    try:
        sent = m.handle({**_event(kind="sensor", message="weather sensor lost"),
                         "alert_kind": "sensor"})
        assert sent is not None
        for i in range(3):
            clock.advance(60)
            assert m.handle({**_event(kind="sensor", message=f"weather sensor lost again {i}"),
                             "alert_kind": "sensor"}) is None
        # another kind is not held back by the first
        assert m.handle({**_event(kind="storage", message="disk full"),
                         "alert_kind": "storage"}) is not None
        assert m.flush_digests() == []  # the window is not over yet
        clock.advance(15 * 60)
        digests = m.flush_digests()
        assert len(digests) == 1 and digests[0].kind == "sensor"
        assert "3 more sensor alerts" in digests[0].title
        assert "weather sensor lost again 2" in digests[0].body
        assert wait_for(lambda: len(http.posts) >= 3, 20)
    finally:
        m.stop(5)
    titles = [p["title"] for p in http.posts]
    assert sum("3 more sensor alerts" in t for t in titles) == 1
    assert len(http.posts) == 3  # first sensor, storage, the digest


def test_failed_delivery_is_retried_then_logged_never_raised(caplog):
    bad = HttpReceiver(status=500)
    caplog.set_level(logging.INFO, logger="tenmon.daemon.alerts")
    m = _manager([bad.url()], retries=2)
    try:
        m.listener(_event(message="cannot close slit"))
        assert wait_for(lambda: m.status()["targets"][0]["failed"] == 1, 20)
    finally:
        m.stop(5)
        bad.stop()
    assert len(bad.posts) == 3  # one attempt and two retries
    assert any("ALERT NOT DELIVERED" in r.getMessage() for r in caplog.records)


def test_a_hanging_smtp_server_does_not_delay_the_control_tick(sim_rig, caplog):
    """The alert listener only enqueues: while the mail server hangs (connection accepted, no
    greeting ever), control ticks stay short. A blocked tick would last the 3 s SMTP timeout;
    the bound on the worst tick (1 s) leaves room for a loaded test machine's scheduling, and
    nine ticks in ten must stay under 100 ms."""
    hang = HangingSmtp()
    rig = sim_rig()
    obs = rig.obs
    m = _manager([hang.url()], timeout_s=3.0, retries=1)
    obs.event_listeners.append(m.listener)
    durations: list[float] = []
    try:
        obs.emit("alarm", "safety", "SAFE STATE NOT REACHED after 2 retries: slit open")
        assert wait_for(lambda: hang.accepted, 5), "the delivery never connected"
        t_end = time.monotonic() + 2.0
        n = 0
        while time.monotonic() < t_end:  # ticks while the delivery thread is stuck in SMTP
            rig.clock.advance(rig.tick_s)
            t0 = time.perf_counter()
            tick_once(obs)
            obs.emit("alarm", "sensor", f"more alarms while it hangs {n}")  # listener in a tick
            durations.append(time.perf_counter() - t0)
            n += 1
        assert n > 20
        assert m.status()["targets"][0]["sent"] == 0  # still hanging: nothing delivered
    finally:
        m.stop(0.5)
        hang.stop()
    durations.sort()
    worst, p90 = durations[-1], durations[int(0.9 * (len(durations) - 1))]
    assert worst < 1.0, f"a tick took {worst * 1000:.0f} ms while the SMTP server hung"
    assert p90 < 0.100, f"p90 tick {p90 * 1000:.0f} ms while the SMTP server hung"


def test_apprise_does_not_touch_the_network_at_import_or_setup():
    code = textwrap.dedent("""
        import sys
        seen = []
        def hook(event, args):
            if event in ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname",
                         "socket.sendto", "socket.sendmsg"):
                seen.append((event, repr(args)[:120]))
        sys.addaudithook(hook)
        from tenmon.config.models import AlertsConfig
        from tenmon.daemon.alerts import AlertManager, build_service
        import apprise
        m = AlertManager(AlertsConfig(urls=["mailtos://u:p@smtp.example.org?to=a@example.org",
                                            "ntfys://ntfy.example.org/topic",
                                            "json://hooks.example.org/x"]))
        problems = m.start()
        assert problems == [], problems
        m.stop(1)
        print("SEEN", seen)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "SEEN []" in r.stdout, r.stdout


def test_unknown_url_is_a_problem_not_a_crash():
    m = AlertManager(AlertsConfig(urls=["nosuchscheme://x", "json://127.0.0.1:9/x"]),
                     clock=FakeClock())
    problems = m.start()
    try:
        assert len(problems) == 1 and "alerts.urls[0]" in problems[0]
        assert len(m.status()["targets"]) == 1
    finally:
        m.stop(0.5)
