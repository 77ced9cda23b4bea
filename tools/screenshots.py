"""Screenshots of the operator page (docs/images/operator-page-{desktop,phone}.png).

Starts the simulated daemon (x10, a fixed night), opens the slit and the cover, rotates the dome,
takes one centring frame (processed and solved by the daemon), then photographs the page in
Debian's headless chromium at a desktop and a phone width.

    .venv/bin/python tools/screenshots.py [--out docs/images]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
ENV = {"TENMON_SIM__START_UTC": '"2026-11-21T13:00:00Z"'}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/images")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="tenmon-shots-"))
    port = _port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, **ENV, "TENMON_PATHS__DATA_DIR": str(tmp / "data")}
    daemon = subprocess.Popen([sys.executable, "-m", "tenmon.cli.main", "daemon", "--simulate",
                               "--speed", "10", "--port", str(port), "--data-dir",
                               str(tmp / "data"), "--fresh"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def cli(*a: str) -> str:
        return subprocess.run([sys.executable, "-m", "tenmon.cli.main", "--url", url, *a],
                              env=env, check=True, capture_output=True, text=True).stdout

    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(url + "/api/v1/status", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        token = (tmp / "data" / "api.token").read_text().strip()
        cli("slit", "open", "--wait")
        cli("cover", "open", "--wait")
        req = urllib.request.Request(url + "/api/v1/center", method="POST",
                                     data=json.dumps({"ra_deg": 45.0, "dec_deg": 40.0,
                                                      "max_tries": 1}).encode(),
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {token}"})
        urllib.request.urlopen(req, timeout=30)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            for name, (w, h) in {"desktop": (1440, 900), "phone": (390, 844)}.items():
                page = browser.new_page(viewport={"width": w, "height": h},
                                        device_scale_factor=1 if name == "desktop" else 2)
                page.goto(url + "/")
                page.wait_for_function("() => document.getElementById('ccd-img').naturalWidth"
                                       " > 0 && document.getElementById('ir-img').naturalWidth"
                                       " > 0", timeout=240_000)
                page.wait_for_timeout(1500)
                path = out / f"operator-page-{name}.png"
                page.screenshot(path=str(path), full_page=True)
                print(path)
                page.close()
            browser.close()
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            daemon.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
