"""The one status model: the facts of a status snapshot, as ``tenmon status`` and the operator
page both show them.

The daemon's ``GET /api/v1/status`` answers the snapshot (``Observatory.status()``, with the
services' sections). :func:`status_view` turns a snapshot into the facts a person reads: the
headline (SAFE / UNSAFE and why), one line per part (dome, slit, cover, mount, safety, weather,
encoder, relays, night, frames, storage, centring, simulated faults), each with a level
(``ok``, ``info``, ``warning``, ``alarm``), and the standing alarms. ``tenmon status`` prints
:func:`format_text` of it; the daemon pushes the same view to the operator page (``daemon.push``),
which shows these lines as they are and draws its pictures from the snapshot beside them. So the
two cannot disagree on a fact: there is one function that states it.

Pure: a dict in, dicts and text out; it imports nothing of the daemon or the CLI.
"""

from __future__ import annotations

from typing import Any

#: Levels of a fact, least to most urgent.
LEVELS = ("ok", "info", "warning", "alarm")


def _deg(v, fmt="{:.1f}°") -> str:
    return "—" if v is None else fmt.format(v)


def _worst(*levels: str) -> str:
    return max(levels, key=LEVELS.index) if levels else "ok"


def _fact(key: str, label: str, text: str, level: str = "ok") -> dict[str, str]:
    return {"key": key, "label": label, "text": text, "level": level}


def headline(s: dict[str, Any]) -> dict[str, Any]:
    """The first line: mode, time, SAFE/UNSAFE (and shutting down)."""
    sf = s["safety"]
    text = f"tenmon  {s['mode']}  {s['time_utc'][:19].replace('T', ' ')} UTC"
    text += "   " + ("SAFE" if sf["safe"] else "UNSAFE")
    if s["daemon"].get("shutting_down"):
        text += "   (shutting down)"
    return {"text": text, "safe": bool(sf["safe"]), "level": "ok" if sf["safe"] else "alarm"}


def _dome(s) -> dict[str, str]:
    d = s["dome"]
    text = f"az {_deg(d['azimuth_deg'])}  " + (d["state"].upper() if d.get("uncommanded")
                                                else d["state"])
    if d["slewing"] and d["target_deg"] is not None:
        text += f" to {_deg(d['target_deg'])}"
    text += ("  at home" if d["at_home"] else "") + ("  at park" if d["at_park"] else "")
    if d["error"]:
        text += f"  ERROR: {d['error']}"
    level = "alarm" if d["error"] or d.get("uncommanded") or d["state"] in ("error",) else (
        "warning" if d["state"] == "unknown" else "info" if d["slewing"] else "ok")
    return _fact("dome", "dome", text, level)


def _slit(s) -> dict[str, str]:
    sl = s["slit"]
    frac = sl["open_fraction"]
    text = (sl["state"].upper() if sl.get("uncommanded") else sl["state"]) \
        + ("" if frac is None else f"  {frac:.0%} open")
    blind = not sl["verified"] and sl["state"] == "closed"
    if blind:
        text += "  NOT VERIFIED (blind close): not the safe state"
    if sl["error"]:
        text += f"  ERROR: {sl['error']}"
    level = "alarm" if sl["error"] or sl.get("uncommanded") or blind or sl["state"] == "error" \
        else "warning" if sl["state"] == "unknown" else \
        "info" if sl["state"] in ("opening", "closing", "open", "partial") else "ok"
    return _fact("slit", "slit", text, level)


def _cover(s) -> dict[str, str]:
    c = s["cover"]
    text = c["state"] + ("" if c["verified"] or c["state"] != "closed"
                         else "  (timed, not verified)") \
        + (f"  ERROR: {c['error']}" if c["error"] else "")
    level = "alarm" if c["error"] or c.get("uncommanded") or c["state"] == "error" else \
        "warning" if c["state"] == "unknown" else "info" if c["state"] != "closed" else "ok"
    return _fact("cover", "cover", text, level)


def _mount(s) -> dict[str, str]:
    m = s["mount"]
    text = (f"RA {_deg(m['ra_deg'], '{:.4f}°')}  Dec {_deg(m['dec_deg'], '{:+.4f}°')}  "
            f"alt {_deg(m['alt_deg'])}  az {_deg(m['az_deg'])}  {m['state']}")
    if m["error"]:
        text += f"  ERROR: {m['error']}"
    level = "alarm" if m["error"] or m["state"] == "error" else \
        "warning" if m["state"] == "unknown" else "info" if m["slewing"] else "ok"
    return _fact("mount", "mount", text, level)


def _safety(s) -> list[dict[str, str]]:
    sf = s["safety"]
    text = "safe" if sf["safe"] else "UNSAFE: " + "; ".join(sf["reasons"])
    if sf.get("closing"):
        text += "  (closing to the safe state)"
    if sf.get("emergency"):
        text += "  EMERGENCY STOP latched (tenmon resume)"
    if sf.get("in_safe_state") is not None:
        text += "  in safe state" if sf["in_safe_state"] else ""
    hold = (sf.get("hold_off") or {}).get("remaining_s")
    if hold:
        text += f"  reopen hold-off {hold:.0f} s"
    level = "alarm" if not sf["safe"] or sf.get("emergency") else "info" if hold else "ok"
    out = [_fact("safety", "safety", text, level)]
    for fault in sf.get("faults") or []:
        out.append(_fact("fault", "FAULT", f"{fault['message']}  (clear: tenmon resume)",
                         "alarm"))
    return out


def _weather(s) -> dict[str, str]:
    w = s.get("weather")
    if w and "rain" in w:
        text = f"rain {'YES' if w['rain'] else 'no'}"
        if w.get("wind_ms") is not None:
            text += f"  wind {w['wind_ms']:.1f} m/s"
        if w.get("humidity_pct") is not None:
            text += f"  humidity {w['humidity_pct']:.0f} %"
        if w.get("invalid"):
            text += "  INVALID: " + ", ".join(w["invalid"])
        if w.get("age_s") is not None:
            text += f"  age {w['age_s']:.0f} s"
        if w.get("error"):
            text += f"  ({w['error']})"
        level = "alarm" if w["rain"] or w.get("invalid") else "warning" if w.get("error") \
            else "ok"
        return _fact("weather", "weather", text, level)
    if w and w.get("error"):
        return _fact("weather", "weather", f"no reading ({w['error']})", "alarm")
    return _fact("weather", "weather", "no reading", "alarm")


def _encoder(s) -> dict[str, str]:
    e = s["encoder"]
    text = (f"{e['state']}  az {_deg(e['azimuth_deg'])}  conf {e['confidence'] or 0:.2f}"
            + ("  no trusted reading" if e["age_s"] is None else f"  age {e['age_s']:.1f} s")
            + ("" if e.get("state_age_s") is None
               else f"  state carried from {e['state_age_s']:.0f} s ago"))
    level = "warning" if e["age_s"] is None or e["state"] == "unknown" else "ok"
    return _fact("encoder", "encoder", text, level)


def _relays(s) -> list[dict[str, str]]:
    out = []
    for name, r in (s.get("relays") or {}).items():
        on = ",".join(map(str, r["on"])) or "none"
        text = ("connected" if r["connected"] else "DISCONNECTED") + f", on: {on}"
        if r.get("physically_on") is not None:
            phys = ",".join(map(str, r["physically_on"])) or "none"
            text += f", read back on: {phys}" + ("  DISAGREES" if r.get("disagree") else "")
        level = "alarm" if not r["connected"] or r.get("disagree") else "ok"
        out.append(_fact(f"relays.{name}", "relays", f"{name}: {text}", level))
    return out


def _night(s) -> list[dict[str, str]]:
    n = s.get("night")
    if not n:
        return []
    text = f"{n.get('phase', '?')}"
    if n.get("active"):
        text += f"  night of {n.get('night')}"
    if n.get("hold_reason"):
        text += f"  (held: {n['hold_reason']})"
    text += f"  queue {n.get('queue_pending', 0)} pending"
    out = [_fact("night", "night", text, "info" if n.get("hold_reason") else "ok")]
    f = n.get("frames") or {}
    if f:
        out.append(_fact("frames", "frames",
                         f"{f.get('done', 0)}/{f.get('received', 0)} processed, "
                         f"{f.get('solved', 0)} solved, {f.get('failed', 0)} failed, "
                         f"{f.get('queued', 0)} queued"
                         + (f", {f['dropped']} dropped" if f.get("dropped") else ""),
                         "warning" if f.get("failed") or f.get("dropped") else "ok"))
    return out


def storage_line(st: dict[str, Any]) -> str:
    """The database and free space, in one line: what is wrong first."""
    if st.get("state") == "degraded":
        txt = (f"DEGRADED: {st.get('error') or 'database not open'}; "
               f"{st.get('buffered_rows', 0)} rows wait in memory")
    else:
        txt = "ok"
    if st.get("dropped_rows"):
        txt += f", {st['dropped_rows']} rows dropped"
    free = [f"{d['label']} {d['free_mb']:.0f} MB" for d in st.get("directories") or []
            if d.get("free_mb") is not None]
    if free:
        txt += "  free: " + ", ".join(free)
    if st.get("disk") in ("low", "critical", "unknown") and st.get("directories"):
        txt += f"  (disk {st['disk'].upper()})"
    if st.get("exposures_allowed") is False:
        txt += "  EXPOSURES REFUSED"
    return txt


def _storage(s) -> list[dict[str, str]]:
    st = s.get("storage")
    if not st:
        return []
    level = "alarm" if st.get("state") == "degraded" or st.get("disk") == "critical" else \
        "warning" if st.get("dropped_rows") or st.get("disk") in ("low", "unknown") \
        or st.get("exposures_allowed") is False else "ok"
    return [_fact("storage", "storage", storage_line(st), level)]


def _centring(s) -> list[dict[str, str]]:
    c = s.get("centring")
    if not (c and c.get("id")):
        return []
    last = (c.get("tries") or [{}])[-1]
    sep = last.get("separation_arcsec")
    text = (f"{c.get('state')}  {len(c.get('tries') or [])} tries"
            + (f", last {sep:.1f}\"" if isinstance(sep, (int, float)) else ""))
    return [_fact("centring", "centring", text,
                  "warning" if c.get("state") == "failed" else "ok")]


def _sim(s) -> list[dict[str, str]]:
    if s.get("sim") and s["sim"]["faults"]:
        return [_fact("sim", "sim", "faults: " + ", ".join(s["sim"]["faults"]), "warning")]
    return []


def facts(s: dict[str, Any]) -> list[dict[str, str]]:
    """The lines below the headline, in ``tenmon status``'s order: ``{"key", "label", "text",
    "level"}`` each."""
    return [_dome(s), _slit(s), _cover(s), _mount(s), *_safety(s), _weather(s), _encoder(s),
            *_relays(s), *_night(s), *_storage(s), *_centring(s), *_sim(s)]


def alarms(s: dict[str, Any], lines: list[dict[str, str]] | None = None) -> list[str]:
    """What must stand out: every fact at the ``alarm`` level, as ``label: text``."""
    lines = facts(s) if lines is None else lines
    return [f"{f['label']}: {f['text']}" for f in lines if f["level"] == "alarm"]


def status_view(s: dict[str, Any]) -> dict[str, Any]:
    """The facts of a status snapshot: ``headline``, ``facts``, ``alarms``, ``level`` (the worst
    of them), ``text`` (exactly what ``tenmon status`` prints)."""
    head = headline(s)
    lines = facts(s)
    return {"headline": head, "facts": lines, "alarms": alarms(s, lines),
            "level": _worst(head["level"], *(f["level"] for f in lines)),
            "text": _text(head, lines)}


def _text(head: dict[str, Any], lines: list[dict[str, str]]) -> str:
    return "\n".join([head["text"], *(f"{f['label']:<8} {f['text']}" for f in lines)])


def format_text(s: dict[str, Any]) -> str:
    """The status snapshot as a few aligned lines for a person (``tenmon status``)."""
    return _text(headline(s), facts(s))


__all__ = ["LEVELS", "status_view", "format_text", "facts", "headline", "alarms",
           "storage_line"]
