"""astrometry.net solvers: local ``solve-field`` (blind or hinted) and the web API (nova or a site's server).

Local: Debian's ``astrometry.net`` package with index packages (``astrometry-data-tycho2-07``
etc., in ``/usr/share/astrometry`` via ``/etc/astrometry.cfg``; a site with other indexes, e.g.
the 5200 series for narrow fields, points ``backend_config`` at its own config). Fed a source
list it is fastest (DESIGN.md: ~0.13 s with hints); for frames where our extraction finds very
few sources it can run its own extraction on the image. The subprocess runs in its own process
group with ``--cpulimit`` and a wall-clock timeout, and is killed on timeout.

Web: ``astroquery.astrometry_net`` with the API key and URL from settings (a site's own server
by setting the instance's ``URL``/``API_URL``). astroquery passes no HTTP timeout, so every
request is bounded here (a subclass adds ``timeout`` to each request) and the whole call runs in
a worker thread with a deadline.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.units import UnitsWarning
from astropy.wcs import WCS, FITSFixedWarning

from tenmon.core.errors import SolveError
from tenmon.vision.solve.base import SolveHint, SolveResult, check_sources
from tenmon.config.vision import SolveFieldSettings, WebApiSettings

log = logging.getLogger(__name__)


def _killpg(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class LocalAstrometryNet:
    """``solve-field`` on a source list (or the image), with hints when known."""

    name = "astrometry_net"

    def __init__(self, settings: SolveFieldSettings | None = None):
        self.settings = settings or SolveFieldSettings()

    def available(self) -> bool:
        """True if the solve-field executable is found."""
        return shutil.which(self.settings.command) is not None

    def solve(self, sources: Table, shape: tuple[int, int], hint: SolveHint, *, timeout_s: float | None = None,
              image_path: str | os.PathLike[str] | None = None) -> SolveResult:
        """Solve with solve-field; ``image_path`` lets it extract its own sources on sparse frames.

        Raises ``SolveError`` if solve-field is not installed or fails to run (exit status other
        than "not solved"); a field it cannot solve, or a timeout, is ``solved=False``.
        """
        t0 = time.perf_counter()
        s = self.settings
        exe = shutil.which(s.command)
        if exe is None:
            raise SolveError(f"{s.command} not found: install Debian's astrometry.net and index packages")
        timeout = float(timeout_s if timeout_s is not None else s.timeout_s)
        x, y, flux = check_sources(sources, shape)
        ny, nx = shape
        with tempfile.TemporaryDirectory(prefix="tenmon-solve-") as tmp:
            work = Path(tmp)
            args = [exe, "--no-plots", "--overwrite", "--dir", str(work), "--new-fits", "none",
                    "--index-xyls", "none", "--rdls", "none", "--match", "none", "--no-verify",
                    "--cpulimit", str(max(1, int(math.ceil(timeout)))),
                    "--odds-to-solve", f"{s.odds_to_solve:g}", "--code-tolerance", f"{s.code_tolerance:g}",
                    "--temp-dir", str(work)]
            if s.tweak_order == 0:
                args.append("--no-tweak")
            else:
                args += ["--tweak-order", str(s.tweak_order)]
            if s.backend_config is not None:
                args += ["--backend-config", str(s.backend_config)]
            if hint.scale_arcsec:
                lo = hint.scale_arcsec * (1 - max(s.scale_tolerance, hint.scale_tolerance))
                hi = hint.scale_arcsec * (1 + max(s.scale_tolerance, hint.scale_tolerance))
                args += ["--scale-units", "arcsecperpix", "--scale-low", f"{lo:.5f}", "--scale-high", f"{hi:.5f}"]
            if hint.has_position:
                radius = hint.radius_deg if hint.radius_deg is not None else 1.0
                half_diag = (math.hypot(nx, ny) / 2 * hint.scale_arcsec / 3600.0) if hint.scale_arcsec else 1.0
                args += ["--ra", f"{hint.ra_deg:.6f}", "--dec", f"{hint.dec_deg:.6f}",
                         "--radius", f"{radius + half_diag:.4f}"]
            if image_path is not None and len(x) < s.use_image_below:
                target = work / "image.fits"
                shutil.copyfile(image_path, target)  # never let solve-field touch the input
                args += [str(target)]
                mode = "image"
            else:
                if len(x) < 4:
                    return SolveResult.failure(self.name, f"only {len(x)} sources: too few for astrometry.net",
                                               _ms(t0))
                n = min(len(x), s.max_sources)
                cols = [fits.Column(name="X", format="D", array=x[:n] + 1.0),  # FITS pixels are 1-based
                        fits.Column(name="Y", format="D", array=y[:n] + 1.0),
                        fits.Column(name="FLUX", format="D", array=flux[:n])]
                hdu = fits.BinTableHDU.from_columns(cols)
                hdu.header["IMAGEW"] = nx
                hdu.header["IMAGEH"] = ny
                target = work / "sources.xyls"
                hdu.writeto(target)
                args += ["--width", str(nx), "--height", str(ny), "--x-column", "X", "--y-column", "Y",
                         "--sort-column", "FLUX", "--no-remove-lines", "--uniformize", "0", str(target)]
                mode = "sources"
            log.debug("running %s", " ".join(args))
            proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    start_new_session=True, cwd=work, text=True)
            try:
                out, _ = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                _killpg(proc)
                proc.communicate()
                return SolveResult.failure(self.name, f"solve-field timed out after {timeout:.0f} s", _ms(t0))
            finally:
                if proc.poll() is None:
                    _killpg(proc)
            stem = target.stem
            wcs_file = work / f"{stem}.wcs"
            if not wcs_file.is_file():
                if proc.returncode not in (0, None):
                    tail = " | ".join((out or "").strip().splitlines()[-3:])
                    raise SolveError(f"solve-field failed (exit {proc.returncode}): {tail}")
                return SolveResult.failure(self.name, f"astrometry.net did not solve the field ({mode})", _ms(t0))
            header = fits.getheader(wcs_file)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FITSFixedWarning)
                wcs = WCS(header, relax=True)
            wcs.pixel_shape = (nx, ny)
            rms, n_match = _corr_stats(work / f"{stem}.corr", wcs)
        return SolveResult.from_wcs(wcs, shape, solver=self.name, elapsed_ms=_ms(t0), rms_arcsec=rms,
                                    n_matched=n_match)


def _corr_stats(path: Path, wcs: WCS) -> tuple[float | None, int]:
    """rms (arcsec) and count of the star correspondences solve-field wrote (``.corr``)."""
    if not path.is_file():
        return None, 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnitsWarning)  # solve-field writes units 'pixels', 'degrees'
            t = Table.read(path, hdu=1)
    except (OSError, ValueError):
        return None, 0
    if len(t) == 0:
        return None, 0
    # field_x/field_y are 1-based FITS pixels.
    sky = wcs.all_pix2world(np.column_stack([np.asarray(t["field_x"], float) - 1.0,
                                             np.asarray(t["field_y"], float) - 1.0]), 0)
    ra, dec = np.radians(np.asarray(t["index_ra"], float)), np.radians(np.asarray(t["index_dec"], float))
    r2, d2 = np.radians(sky[:, 0]), np.radians(sky[:, 1])
    a = np.sin((d2 - dec) / 2) ** 2 + np.cos(dec) * np.cos(d2) * np.sin((r2 - ra) / 2) ** 2
    sep = np.degrees(2 * np.arcsin(np.sqrt(np.clip(a, 0, 1)))) * 3600.0
    return float(np.sqrt(np.mean(sep**2))), int(len(t))


# ------------------------------------------------------------------------------------ web API


def _client_class():
    """An astroquery AstrometryNetClass whose every HTTP request carries a timeout."""
    from astroquery.astrometry_net import AstrometryNetClass

    class _BoundedAstrometryNet(AstrometryNetClass):
        request_timeout_s: float = 30.0

        def _request(self, method, url, **kwargs):
            if kwargs.get("timeout") is None:
                kwargs["timeout"] = self.request_timeout_s
            return super()._request(method, url, **kwargs)

    return _BoundedAstrometryNet


class AstrometryNetWeb:
    """The astrometry.net web API through astroquery (uploads the source list, not the image)."""

    name = "astrometry_net_web"

    def __init__(self, settings: WebApiSettings):
        self.settings = settings

    def _client(self):
        s = self.settings
        if s.api_key is None or not s.api_key.get_secret_value():
            raise SolveError("astrometry.net web API: no api_key configured")
        cls = _client_class()
        client = cls()
        base = s.url.rstrip("/")
        client.URL = base
        client.API_URL = f"{base}/api"
        client.request_timeout_s = s.request_timeout_s
        client.api_key = s.api_key.get_secret_value()
        return client

    def solve(self, sources: Table, shape: tuple[int, int], hint: SolveHint, *, timeout_s: float | None = None,
              image_path: str | os.PathLike[str] | None = None) -> SolveResult:
        """Upload the brightest sources with the hints; wait at most ``timeout_s`` in all.

        A server that does not answer, or answers late, gives ``solved=False`` with the reason;
        the worker thread is abandoned (its sockets time out on their own after
        ``request_timeout_s``). Raises ``SolveError`` without an API key.
        """
        t0 = time.perf_counter()
        s = self.settings
        timeout = float(timeout_s if timeout_s is not None else s.timeout_s)
        client = self._client()
        x, y, _ = check_sources(sources, shape)
        if len(x) < 4:
            return SolveResult.failure(self.name, f"only {len(x)} sources: too few for astrometry.net", _ms(t0))
        n = min(len(x), s.max_sources)
        ny, nx = shape
        settings: dict[str, object] = {}
        if hint.scale_arcsec:
            settings.update(scale_units="arcsecperpix", scale_type="ul",
                            scale_lower=hint.scale_arcsec * (1 - max(0.1, hint.scale_tolerance)),
                            scale_upper=hint.scale_arcsec * (1 + max(0.1, hint.scale_tolerance)))
        if hint.has_position:
            half_diag = (math.hypot(nx, ny) / 2 * hint.scale_arcsec / 3600.0) if hint.scale_arcsec else 1.0
            settings.update(center_ra=float(hint.ra_deg), center_dec=float(hint.dec_deg),
                            radius=float((hint.radius_deg or 1.0) + half_diag))
        box: dict[str, object] = {}

        def work() -> None:
            try:
                box["header"] = client.solve_from_source_list(
                    (x[:n] + 1.0).tolist(), (y[:n] + 1.0).tolist(), nx, ny,
                    solve_timeout=max(1, int(timeout)), verbose=False, **settings)
            except Exception as exc:  # HTTP errors, timeouts, JSON: reported as the reason
                box["error"] = exc

        th = threading.Thread(target=work, name="astrometry-net-web", daemon=True)
        th.start()
        th.join(timeout)
        if th.is_alive():
            return SolveResult.failure(self.name, f"{s.url} did not answer within {timeout:.0f} s", _ms(t0))
        if "error" in box:
            exc = box["error"]
            return SolveResult.failure(self.name, f"{s.url}: {type(exc).__name__}: {exc}"[:300], _ms(t0))
        header = box.get("header")
        if not header:
            return SolveResult.failure(self.name, f"{s.url} could not solve the field", _ms(t0))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(header, relax=True)
        wcs.pixel_shape = (nx, ny)
        return SolveResult.from_wcs(wcs, shape, solver=self.name, elapsed_ms=_ms(t0), rms_arcsec=None,
                                    n_matched=0)


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0
