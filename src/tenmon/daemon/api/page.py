"""The operator page, served by the daemon on the API's address (docs/operator-page.md).

Routes (outside ``/api/v1``: the page is not part of the JSON API and its OpenAPI document):

- ``GET /`` and ``GET /page/{app.js,style.css,icon.svg}``: the page's own files, packaged in
  the wheel (``tenmon/daemon/api/web/``): plain HTML, CSS and JavaScript, no build step, nothing
  from another site. They hold no data, so they need no token; the Host/Origin check still
  applies.
- ``GET /page/stream``: the live state (``daemon.push``), ``GET /page/ir.jpg`` and
  ``GET /page/ccd.jpg``: the latest pictures (``daemon.page_media``). These are reads of the
  API like ``/api/v1/status``: they need the token exactly when reads do (an API reachable
  from other machines).

Controls on the page call the API's own command routes (``POST /api/v1/...``) with the token as
``Authorization: Bearer``; every rule of the API holds for them (token, Host/Origin, JSON body,
audit). The page answers with headers that keep it out of other sites' frames and scripts
(CSP ``default-src 'self'``, ``frame-ancestors 'none'``).
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from tenmon.daemon.api.kit import error_response
from tenmon.daemon.api.page_media import PageMedia
from tenmon.daemon.api.push import StatusPush

WEB_DIR = Path(__file__).resolve().parent / "web"
ASSETS = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css",
          "icon.svg": "image/svg+xml"}
#: ``app[PAGE_KEY]``: the page's :class:`StatusPush` (its media at ``.media``).
PAGE_KEY = web.AppKey("tenmon_page", StatusPush) if hasattr(web, "AppKey") else "tenmon_page"
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; "
                               "style-src 'self'; script-src 'self'; connect-src 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _public(fn):
    fn.tenmon_public = True  # read by the API's guard: no token for the page's own files
    return fn


def install_page(app: web.Application, obs, *, period_s: float = 0.5,
                 ir_period_s: float = 3.0) -> StatusPush:
    """Serve the operator page of ``obs`` on ``app`` (the API's application)."""
    media = PageMedia(obs, ir_period_s=ir_period_s)
    push = StatusPush(obs, media, period_s=period_s)

    async def startup(_app) -> None:
        frames = getattr(getattr(obs, "night_ops", None), "frames", None)
        if frames is not None and media.on_frame not in frames.listeners:
            frames.listeners.append(media.on_frame)
        await push.on_startup(_app)

    async def cleanup(_app) -> None:
        frames = getattr(getattr(obs, "night_ops", None), "frames", None)
        if frames is not None and media.on_frame in frames.listeners:
            frames.listeners.remove(media.on_frame)
        if push._on_event in obs.event_listeners:
            obs.event_listeners.remove(push._on_event)
        media.close()

    def asset(name: str):
        path = WEB_DIR / name

        @_public
        async def serve(request: web.Request) -> web.Response:
            return web.Response(body=path.read_bytes(), content_type=ASSETS[name],
                                charset="utf-8" if name != "icon.svg" else None,
                                headers=PAGE_HEADERS)
        return serve

    def picture(get):
        async def serve(request: web.Request) -> web.Response:
            data = get()
            if data is None:
                return error_response("not_found", "no picture yet", 404)
            return web.Response(body=data, content_type="image/jpeg",
                                headers={"Cache-Control": "no-store",
                                         "X-Content-Type-Options": "nosniff"})
        return serve

    app.router.add_get("/", asset("index.html"))
    for name in ASSETS:
        if name != "index.html":
            app.router.add_get(f"/page/{name}", asset(name))
    app.router.add_get("/page/stream", push.handle)
    app.router.add_get("/page/ir.jpg", picture(media.ir_jpeg))
    app.router.add_get("/page/ccd.jpg", picture(media.ccd_jpeg))
    app[PAGE_KEY] = push
    app.on_startup.append(startup)
    app.on_shutdown.append(push.on_shutdown)
    app.on_cleanup.append(cleanup)
    return push


__all__ = ["install_page", "WEB_DIR", "ASSETS", "PAGE_HEADERS", "PAGE_KEY"]
