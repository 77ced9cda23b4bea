// tenmon operator page: live state from /page/stream (Server-Sent Events read with fetch, so
// that the API token can go in the Authorization header), pictures from /page/*.jpg, commands
// to the API's own routes. Plain JavaScript, no build step, nothing from another site.
"use strict";

const TOKEN_KEY = "tenmon.token";
const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

let token = sessionStorage.getItem(TOKEN_KEY) || "";
let last = null;            // the newest document
let events = [];            // the event log shown
let irSeq = -1, ccdSeq = -1;
let irUrl = null, ccdUrl = null;
let afterLogin = null;      // a command waiting for the login

// ------------------------------------------------------------------ helpers

function authHeaders() { return token ? { Authorization: "Bearer " + token } : {}; }

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function fmt(v, d = 1, unit = "°") { return v === null || v === undefined ? "—" : v.toFixed(d) + unit; }

function badge(text, level) { return el("span", { class: "badge " + (level || "") }, text); }

function say(text, bad) {
  const m = $("message");
  m.textContent = text;
  m.className = "message" + (bad ? " bad" : "");
  m.hidden = !text;
}

// ------------------------------------------------------------------ the stream

async function stream() {
  for (;;) {
    try {
      const resp = await fetch("/page/stream", { headers: authHeaders(), cache: "no-store" });
      if (resp.status === 401) {
        setLink(false, "this daemon's reads need the API token: log in");
        say("This daemon's reads need the API token: log in to watch.", true);
        await waitFor(() => token, 1000);
        continue;
      }
      if (!resp.ok || !resp.body) throw new Error("stream: HTTP " + resp.status);
      setLink(true);
      const reader = resp.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const chunk = buf.slice(0, i);
          buf = buf.slice(i + 2);
          onMessage(chunk);
        }
      }
    } catch (err) {
      // the daemon restarting or the network going away: say so, try again
    }
    setLink(false, "reconnecting");
    await sleep(2000);
  }
}

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }
async function waitFor(cond, ms) { while (!cond()) await sleep(ms); }

function setLink(on, why) {
  const l = $("link");
  l.className = "link " + (on ? "on" : "off");
  l.title = on ? "live" : (why || "no link");
}

function onMessage(chunk) {
  let kind = "message", data = "";
  for (const line of chunk.split("\n")) {
    if (line.startsWith("event:")) kind = line.slice(6).trim();
    else if (line.startsWith("data:")) data += line.slice(5).trim();
  }
  if (!data) return;
  const doc = JSON.parse(data);
  if (kind === "snapshot") events = doc.events.slice();
  else events = events.concat(doc.events);
  if (events.length > 300) events = events.slice(-300);
  last = doc;
  render(doc);
}

// ------------------------------------------------------------------ rendering

function render(doc) {
  const s = doc.status, v = doc.view;
  $("time").textContent = s.time_utc.slice(0, 19).replace("T", " ") + " UTC";
  $("site").textContent = s.mode;
  const safe = s.safety.safe;
  const verdict = $("verdict");
  verdict.textContent = safe ? "SAFE" : "UNSAFE";
  verdict.className = "verdict " + (safe ? "safe" : "unsafe");
  document.body.dataset.seq = doc.seq;
  renderAlarms(v.alarms);
  renderSafety(s);
  renderDevices(s, v);
  renderFacts(v);
  renderEvents();
  renderPlan(doc.plan, s);
  renderMedia(doc.media);
}

function renderAlarms(alarms) {
  const box = $("alarms");
  box.replaceChildren(...alarms.map((a) => el("div", {}, a)));
  box.hidden = alarms.length === 0;
}

function renderSafety(s) {
  const sf = s.safety;
  const v = $("safety-verdict");
  v.textContent = sf.safe ? "Safe" : "UNSAFE";
  v.className = "big " + (sf.safe ? "safe" : "unsafe");
  $("safety-reasons").replaceChildren(...sf.reasons.map((r) => el("li", {}, r)));
  const extra = [];
  if (sf.emergency) extra.push("EMERGENCY STOP latched: " + sf.emergency + " (Resume clears it)");
  if (sf.closing) extra.push("closing to the safe state");
  if (sf.in_safe_state) extra.push("in the safe state (slit closed, cover closed, mount parked)");
  const hold = (sf.hold_off || {}).remaining_s;
  if (hold) extra.push("reopen hold-off " + Math.round(hold) + " s");
  if (sf.sun_alt_deg !== null && sf.sun_alt_deg !== undefined) extra.push("sun " + fmt(sf.sun_alt_deg));
  $("safety-extra").textContent = extra.join(" · ");
}

function factLevel(view, key) {
  const f = view.facts.find((x) => x.key === key);
  return f ? f.level : "ok";
}

function renderDevices(s, view) {
  const d = s.dome, sl = s.slit, c = s.cover, m = s.mount, e = s.encoder;
  const dome = $("dev-dome");
  dome.replaceChildren(
    fmt(d.azimuth_deg) + " " + d.state + (d.slewing && d.target_deg !== null ? " → " + fmt(d.target_deg) : ""),
    ...(d.at_home ? [badge("home")] : []), ...(d.at_park ? [badge("park")] : []),
    ...(d.error ? [badge(d.error, "alarm")] : []));
  dome.className = "lv-" + factLevel(view, "dome");
  const slit = $("dev-slit");
  slit.replaceChildren(sl.state + (sl.open_fraction !== null ? " " + Math.round(sl.open_fraction * 100) + " %" : ""),
    sl.verified ? badge("verified", "ok") : badge(sl.state === "closed" ? "NOT verified" : "unverified",
      sl.state === "closed" ? "alarm" : "warning"),
    ...(sl.error ? [badge(sl.error, "alarm")] : []));
  slit.className = "lv-" + factLevel(view, "slit");
  const cover = $("dev-cover");
  cover.replaceChildren(c.state,
    c.verified ? badge(c.limit_switches ? "limit switch" : "verified", "ok")
      : badge(c.limit_switches ? "unverified" : "timed", c.state === "closed" ? "warning" : ""),
    ...(c.error ? [badge(c.error, "alarm")] : []));
  cover.className = "lv-" + factLevel(view, "cover");
  const mount = $("dev-mount");
  mount.replaceChildren(m.state + "  RA " + fmt(m.ra_deg, 3) + " Dec " + fmt(m.dec_deg, 3)
    + "  alt " + fmt(m.alt_deg) + " az " + fmt(m.az_deg),
    ...(m.error ? [badge(m.error, "alarm")] : []));
  mount.className = "lv-" + factLevel(view, "mount");
  $("dev-encoder").textContent = e.state + "  az " + fmt(e.azimuth_deg) + "  conf "
    + (e.confidence === null ? "—" : e.confidence.toFixed(2))
    + (e.age_s === null ? "  no trusted reading" : "  age " + e.age_s.toFixed(1) + " s");
  $("dev-encoder").className = "lv-" + factLevel(view, "encoder");
  const w = s.weather;
  $("dev-weather").textContent = !w || !("rain" in w) ? "no reading"
    : "rain " + (w.rain ? "YES" : "no") + (w.wind_ms !== null && w.wind_ms !== undefined ? "  wind " + w.wind_ms.toFixed(1) + " m/s" : "")
      + (w.humidity_pct !== null && w.humidity_pct !== undefined ? "  hum " + Math.round(w.humidity_pct) + " %" : "");
  $("dev-weather").className = "lv-" + factLevel(view, "weather");
  renderDial(d, sl, m);
}

function renderDial(d, sl, m) {
  const ticks = $("dial-ticks");
  if (!ticks.firstChild) {
    for (let a = 0; a < 360; a += 30) {
      const r = (a * Math.PI) / 180;
      ticks.appendChild(svg("line", { class: "dial-tick", x1: 84 * Math.sin(r), y1: -84 * Math.cos(r),
        x2: 92 * Math.sin(r), y2: -92 * Math.cos(r) }));
    }
  }
  const az = d.azimuth_deg;
  $("dial-az").textContent = az === null ? "—" : az.toFixed(1) + "°";
  const slitPath = $("dial-slit");
  if (az === null) { slitPath.setAttribute("d", ""); }
  else {
    const a0 = ((az - 7) * Math.PI) / 180, a1 = ((az + 7) * Math.PI) / 180, R = 88;
    slitPath.setAttribute("d", `M0,0 L${R * Math.sin(a0)},${-R * Math.cos(a0)} A${R},${R} 0 0 1 ${R * Math.sin(a1)},${-R * Math.cos(a1)} Z`);
    slitPath.setAttribute("class", "dial-slit" + (sl.state === "open" || sl.state === "partial" ? " open" : ""));
  }
  const tgt = $("dial-target");
  if (d.slewing && d.target_deg !== null) {
    const r = (d.target_deg * Math.PI) / 180;
    tgt.setAttribute("cx", 92 * Math.sin(r)); tgt.setAttribute("cy", -92 * Math.cos(r));
    tgt.setAttribute("visibility", "visible");
  } else tgt.setAttribute("visibility", "hidden");
  const mt = $("dial-mount");
  if (m.az_deg !== null && m.alt_deg !== null && m.alt_deg > 0) {
    const r = (m.az_deg * Math.PI) / 180, rad = 88 * (1 - m.alt_deg / 90);
    mt.setAttribute("cx", rad * Math.sin(r)); mt.setAttribute("cy", -rad * Math.cos(r));
    mt.setAttribute("visibility", "visible");
  } else mt.setAttribute("visibility", "hidden");
}

function renderFacts(view) {
  $("facts").replaceChildren(
    el("li", { class: "lv-" + view.headline.level }, view.headline.text),
    ...view.facts.map((f) => el("li", { class: "lv-" + f.level, "data-key": f.key },
      f.label.padEnd(8) + " " + f.text)));
}

function renderEvents() {
  const list = $("events");
  const atTop = list.scrollTop < 10;
  list.replaceChildren(...events.slice().reverse().slice(0, 200).map((e) => {
    const li = el("li", { class: e.level });
    li.append(el("span", { class: "t mono" }, e.time_utc.slice(11, 19)), e.kind + ": " + e.message);
    return li;
  }));
  if (atTop) list.scrollTop = 0;
}

function renderPlan(plan, s) {
  const box = $("plan");
  if (!plan) {
    const n = s.night;
    box.replaceChildren(el("p", { class: "muted" }, n
      ? "No plan for tonight yet (night phase: " + (n.phase || "?") + ", " + (n.queue_pending ?? 0) + " targets queued)."
      : "No night operations: nothing is planned (the night's jobs are off; [night] enabled = true turns them on)."));
    return;
  }
  if (plan.error) { box.replaceChildren(el("p", { class: "error" }, plan.error)); return; }
  const t0 = Date.parse(plan.start_utc), t1 = Date.parse(plan.end_utc), span = Math.max(1, t1 - t0);
  const pct = (t) => Math.min(100, Math.max(0, (100 * (Date.parse(t) - t0)) / span));
  const bar = el("div", { class: "timeline" });
  for (const b of plan.blocks) {
    const d = el("div", { class: "blk" + (b.done ? " done" : "") + (b.running ? " running" : ""),
      title: `${b.name} ${b.start_utc.slice(11, 16)}–${b.end_utc.slice(11, 16)} UTC` }, b.name);
    d.style.left = pct(b.start_utc) + "%";
    d.style.width = Math.max(0.5, pct(b.end_utc) - pct(b.start_utc)) + "%";
    bar.appendChild(d);
  }
  const now = el("div", { class: "now", title: "now" });
  now.style.left = pct(plan.now_utc) + "%";
  bar.appendChild(now);
  const axis = el("div", { class: "axis" });
  axis.append(el("span", {}, plan.start_utc.slice(11, 16) + " UTC dusk"),
    el("span", {}, plan.end_utc.slice(11, 16) + " dawn"));
  const done = plan.blocks.filter((b) => b.done).length;
  const list = el("ol", { class: "planlist" });
  for (const b of plan.blocks) {
    list.appendChild(el("li", { class: b.done ? "done" : b.running ? "running" : "" },
      `${b.start_utc.slice(11, 16)}–${b.end_utc.slice(11, 16)}  ${b.name}  ${b.count}×${b.exposure_s} s`
      + (b.done ? "  ✓ done" : b.running ? "  ▶ now" : "")));
  }
  const head = el("p", { class: "small" }, `night of ${plan.night}: ${plan.blocks.length} blocks, ${done} done`
    + (plan.unscheduled.length ? `, ${plan.unscheduled.length} left out` : ""));
  box.replaceChildren(head, bar, axis, list);
}

// ------------------------------------------------------------------ pictures

async function picture(path, img, oldUrl) {
  const resp = await fetch(path, { headers: authHeaders(), cache: "no-store" });
  if (!resp.ok) return oldUrl;
  const url = URL.createObjectURL(await resp.blob());
  img.src = url;
  img.hidden = false;
  if (oldUrl) URL.revokeObjectURL(oldUrl);
  return url;
}

function renderMedia(media) {
  if (!media) return;
  const ir = media.ir;
  if (ir) {
    $("ir-none").hidden = true;
    if (ir.seq !== irSeq) {
      irSeq = ir.seq;
      picture("/page/ir.jpg", $("ir-img"), irUrl).then((u) => { irUrl = u; drawIr(ir); });
    }
    $("ir-caption").textContent = `${ir.source}, ${ir.time_utc.slice(11, 19)} UTC`;
  }
  const ccd = media.ccd;
  if (ccd) {
    $("ccd-caption").textContent = `${ccd.name}` + (ccd.target ? ` (${ccd.target})` : "");
    renderSolve(ccd);
    if (ccd.ready && ccd.seq !== ccdSeq) {
      ccdSeq = ccd.seq;
      $("ccd-none").hidden = true;
      picture("/page/ccd.jpg", $("ccd-img"), ccdUrl).then((u) => { ccdUrl = u; drawCcd(ccd); });
    } else if (!ccd.ready && ccdSeq < 0) {
      $("ccd-none").textContent = ccd.error ? "CCD frame: " + ccd.error : "processing " + ccd.name + " …";
    }
  }
}

function poly(points, cls) {
  return svg("polygon", { class: cls, points: points.map((p) => p.join(",")).join(" ") });
}

function drawIr(ir) {
  const o = $("ir-overlay"), ov = ir.overlay, r = ir.reading;
  o.setAttribute("viewBox", `0 0 ${ir.width} ${ir.height}`);
  o.setAttribute("preserveAspectRatio", "none");
  const parts = [];
  if (ov.band.length) parts.push(poly(ov.band, "ov-band"));
  if (ov.open.length) parts.push(poly(ov.open, "ov-open"));
  const [zx, zy] = ov.zenith;
  parts.push(svg("path", { class: "ov-mark", d: `M${zx - 8},${zy} h16 M${zx},${zy - 8} v16` }));
  parts.push(svg("text", { class: "ov-text", x: ov.north[0], y: ov.north[1] }, "N"));
  parts.push(svg("text", { class: "ov-text", x: ov.east[0], y: ov.east[1] }, "E"));
  const label = r.azimuth_deg === null ? `slit not seen (${r.state})`
    : `slit az ${r.azimuth_deg.toFixed(1)}° · ${r.state}` + (r.open_fraction !== null ? ` ${Math.round(r.open_fraction * 100)} % open` : "")
      + (r.confidence !== null ? ` · conf ${r.confidence.toFixed(2)}` : "");
  parts.push(svg("text", { class: "ov-text ir-label", x: 8, y: ir.height - 10 }, label));
  o.replaceChildren(...parts);
}

function drawCcd(ccd) {
  const o = $("ccd-overlay"), w = ccd.width, h = ccd.height;
  o.setAttribute("viewBox", `0 0 ${w} ${h}`);
  o.setAttribute("preserveAspectRatio", "none");
  const parts = [svg("path", { class: "ov-mark", d: `M${w / 2 - 14},${h / 2} h28 M${w / 2},${h / 2 - 14} v28` })];
  const off = ccd.offset;
  if (off) {
    // an inset: the offset of the solved centre from where the mount pointed, north up, east left
    const R = Math.min(w, h) * 0.12, cx = w - R - 10, cy = R + 10;
    const full = Math.max(30, off.total_arcsec);
    parts.push(svg("circle", { class: "ov-inset", cx, cy, r: R }));
    parts.push(svg("line", { class: "ov-arrow ccd-offset", x1: cx, y1: cy,
      x2: cx - (R * off.east_arcsec) / full, y2: cy - (R * off.north_arcsec) / full }));
    parts.push(svg("text", { class: "ov-text", x: cx - 4, y: cy - R + 14 }, "N"));
    parts.push(svg("text", { class: "ov-text", x: cx - R + 4, y: cy + 5 }, "E"));
    parts.push(svg("text", { class: "ov-text", x: cx - R, y: cy + R + 16 }, `offset ${off.total_arcsec.toFixed(1)}″`));
  }
  const sv = ccd.solve || {};
  parts.push(svg("text", { class: "ov-text ccd-label", x: 8, y: h - 10 },
    `${ccd.n_sources ?? "?"} sources · ` + (sv.solved ? `solved RA ${sv.ra_deg.toFixed(4)}° Dec ${sv.dec_deg.toFixed(4)}°` : "not solved")));
  o.replaceChildren(...parts);
}

function renderSolve(ccd) {
  const sv = ccd.solve || {}, box = $("ccd-solve");
  const bits = [];
  bits.push(`${ccd.n_sources ?? "?"} sources (green circles)` + (ccd.fwhm_px ? `, FWHM ${ccd.fwhm_px.toFixed(2)} px` : ""));
  if (sv.solved) {
    bits.push(`solved by ${sv.solver}: RA ${sv.ra_deg.toFixed(5)}° Dec ${sv.dec_deg.toFixed(5)}°`
      + (sv.rms_arcsec != null ? `, rms ${sv.rms_arcsec.toFixed(2)}″` : "") + (sv.n_matched != null ? `, ${sv.n_matched} stars` : ""));
  } else bits.push(el("span", { class: "bad" }, "not solved" + (sv.reason ? ": " + sv.reason : "")));
  if (ccd.offset) bits.push(`pointing offset E ${ccd.offset.east_arcsec.toFixed(1)}″  N ${ccd.offset.north_arcsec.toFixed(1)}″ (${ccd.offset.total_arcsec.toFixed(1)}″)`);
  if (ccd.error) bits.push(el("span", { class: "bad" }, ccd.error));
  box.replaceChildren(...bits.flatMap((b, i) => (i ? [el("br"), b] : [b])));
}

// ------------------------------------------------------------------ login

function showLogin(why) {
  $("login-error").textContent = why || "";
  $("login").hidden = false;
  $("token").value = "";
  $("token").focus();
}

function setWho() {
  $("who").textContent = token ? "logged in" : "not logged in";
  $("login-btn").hidden = !!token;
  $("logout-btn").hidden = !token;
}

async function tryLogin(candidate) {
  // the audit trail always needs the token: a cheap way to check it
  const resp = await fetch("/api/v1/audit?limit=1", { headers: { Authorization: "Bearer " + candidate }, cache: "no-store" });
  if (resp.ok) return null;
  try { return (await resp.json()).error.message; } catch (e) { return "HTTP " + resp.status; }
}

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const candidate = $("token").value.trim();
  if (!candidate) { $("login-error").textContent = "paste the token"; return; }
  const why = await tryLogin(candidate);
  if (why) { $("login-error").textContent = why; return; }
  token = candidate;
  sessionStorage.setItem(TOKEN_KEY, token);
  $("login").hidden = true;
  setWho();
  say("Logged in: commands will carry the token.");
  if (afterLogin) { const f = afterLogin; afterLogin = null; f(); }
});
$("login-cancel").addEventListener("click", () => { $("login").hidden = true; afterLogin = null; });
$("login-btn").addEventListener("click", () => showLogin());
$("logout-btn").addEventListener("click", () => {
  token = ""; sessionStorage.removeItem(TOKEN_KEY); setWho(); say("Logged out.");
});

// ------------------------------------------------------------------ commands

function confirmThen(text) {
  return new Promise((resolve) => {
    $("confirm-text").textContent = text;
    $("confirm").hidden = false;
    const done = (v) => { $("confirm").hidden = true; yes.onclick = no.onclick = null; resolve(v); };
    const yes = $("confirm-yes"), no = $("confirm-no");
    yes.onclick = () => done(true);
    no.onclick = () => done(false);
  });
}

function num(id) {
  const v = $(id).value.trim();
  return v === "" ? NaN : Number(v);
}

const COMMANDS = {
  "slit-open": () => ["/slit/open", null, "Open the slit?"],
  "slit-close": () => ["/slit/close", null, "Close the slit?"],
  "cover-open": () => ["/cover/open", null, "Open the mirror cover?"],
  "cover-close": () => ["/cover/close", null, "Close the mirror cover?"],
  "dome-goto": () => {
    const az = num("dome-az");
    if (!(az >= 0 && az <= 360)) throw new Error("give the dome azimuth in degrees (0–360)");
    return ["/dome/goto", { azimuth_deg: az }, `Rotate the dome to azimuth ${az}°?`];
  },
  "dome-park": () => ["/dome/park", null, "Rotate the dome to its park azimuth?"],
  "dome-abort": () => ["/dome/abort", null, "Stop the dome?"],
  "mount-goto": () => {
    const ra = num("mount-ra"), dec = num("mount-dec");
    if (!(ra >= 0 && ra < 360) || !(dec >= -90 && dec <= 90)) throw new Error("give RA (0–360°) and Dec (−90–90°)");
    return ["/mount/goto", { ra_deg: ra, dec_deg: dec }, `Slew the mount to RA ${ra}° Dec ${dec}°?`];
  },
  "mount-park": () => ["/mount/park", null, "Park the mount?"],
  "resume": () => ["/resume", null, "Clear the emergency stop and actuator faults? (Nothing moves until you command it.)"],
};

async function send(path, body) {
  const headers = { ...authHeaders() };
  const opts = { method: "POST", headers, cache: "no-store" };
  if (body) { headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
  const resp = await fetch("/api/v1" + path, opts);
  let answer = null;
  try { answer = await resp.json(); } catch (e) { /* not JSON */ }
  if (!resp.ok) {
    const msg = answer && answer.error ? answer.error.message : "HTTP " + resp.status;
    if (resp.status === 401) { token = ""; sessionStorage.removeItem(TOKEN_KEY); setWho(); }
    throw new Error(msg);
  }
  return answer;
}

async function command(name) {
  let path, body, question;
  try { [path, body, question] = COMMANDS[name](); }
  catch (err) { say(err.message, true); return; }
  if (!token) {
    say("Controls need the API token: log in first.", true);
    afterLogin = () => command(name);
    showLogin("Controls need the API token.");
    return;
  }
  if (!(await confirmThen(question))) { say("Cancelled."); return; }
  try {
    await send(path, body);
    say(`Done: ${question.replace(/\?.*$/, "")}.`);
  } catch (err) {
    say(`Refused: ${err.message}`, true);
  }
}

for (const b of document.querySelectorAll("[data-cmd]")) {
  b.addEventListener("click", () => command(b.dataset.cmd));
}

// STOP acts at once: no question (it only stops motion and closes the slit).
$("stop-btn").addEventListener("click", async () => {
  if (!token) {
    say("STOP needs the API token: log in (or run `tenmon stop` on the daemon's machine).", true);
    afterLogin = () => $("stop-btn").click();
    showLogin("STOP needs the API token.");
    return;
  }
  try {
    await send("/stop", { reason: "operator page" });
    say("STOPPED: all motion stopped, the slit is closing. Resume clears it.", true);
  } catch (err) {
    say(`STOP refused: ${err.message}`, true);
  }
});

setWho();
stream();
