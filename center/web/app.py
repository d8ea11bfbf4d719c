"""The center's web pages: one FastAPI app, server-rendered Jinja2 pages, every asset
served from the package (no CDN), each page with a JSON twin from the same context
(``/devices`` and ``/devices.json``, as Datasette does), OpenAPI at ``/docs``.

Three faces, one module each: ``staff_pages`` (log-in, the review queue, a case and its
steps, the registers), ``public_pages`` (devices, map, downloads, the benchmark in force),
``owner_pages`` (a case looked up by plate and the code on its notice, a statement and
defence). The pages call the same center functions as the command line; they hold no
rule of their own.

Security: the session cookie is HttpOnly, SameSite=Lax and Secure when served over TLS;
every response carries a Content Security Policy that allows no inline script or style,
and no frame; every staff route refuses an anonymous request and a role it does not
serve; every state-changing form carries the session's CSRF token.
"""

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine
from starlette.middleware.base import BaseHTTPMiddleware

from center.settings import CenterSettings
from center.web import owner_pages, public_pages, staff_case, staff_lists, staff_pages
from center.web.pages import STATIC, NeedsLogIn, templates, to_login

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:"
       "{tiles}; connect-src 'self'; font-src 'self'; object-src 'none'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
"""The Content Security Policy of every response (map tiles' host added when set)."""


class SecurityHeaders(BaseHTTPMiddleware):
    """The same security headers on every response."""

    def __init__(self, app, csp: str) -> None:
        super().__init__(app)
        self.csp = csp

    async def dispatch(self, request: Request, call_next):
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = self.csp
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers.setdefault("Cache-Control", "no-store")
        return response


def _csp(settings: CenterSettings) -> str:
    tiles = ""
    if settings.web.tile_url:
        scheme, _, rest = settings.web.tile_url.partition("://")
        tiles = f" {scheme}://{rest.split('/', 1)[0]}"
    return CSP.format(tiles=tiles)


def create_app(settings: CenterSettings, engine: Engine) -> FastAPI:
    """The web app of a center on its (migrated) database."""
    app = FastAPI(title="zhichao center", version="1", docs_url="/docs",
                  redoc_url=None, openapi_url="/openapi.json")
    app.state.settings = settings
    app.state.engine = engine
    app.state.templates = templates(settings)
    app.state.secure_cookies = settings.web.tls_cert is not None
    app.add_middleware(SecurityHeaders, csp=_csp(settings))
    app.add_exception_handler(NeedsLogIn, to_login)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for module in (public_pages, owner_pages, staff_pages, staff_case, staff_lists):
        app.include_router(module.router)
    return app
