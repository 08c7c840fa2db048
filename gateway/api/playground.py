"""The browser playground: GET /playground serves the page, /playground/<file> its assets.

Only the files of `gateway/static` with a known type are served, looked up by name in that
folder's listing, so no request path can reach another file. The page calls the API under /v1
and loads nothing from elsewhere, which its Content-Security-Policy holds it to.
"""

from __future__ import annotations

from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Match, Route
from starlette.types import Scope

STATIC = Path(__file__).resolve().parent.parent / "static"
PAGE = "playground.html"
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
}


class RootRoute(Route):
    """A route that matches at the app's root only: the API's route list is also mounted
    under /v1, where the playground has no place."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        root_path = scope.get("root_path", "")
        if root_path != scope.get("app_root_path", root_path):
            return Match.NONE, {}  # inside a Mount
        return super().matches(scope)


def _file(name: str) -> Response:
    path = STATIC / name
    media_type = MEDIA_TYPES.get(path.suffix)
    served = {p.name for p in STATIC.iterdir() if p.is_file()} if STATIC.is_dir() else set()
    if media_type is None or name not in served:
        raise HTTPException(404)
    return FileResponse(path, media_type=media_type, headers=HEADERS)


async def page(request: Request) -> Response:
    return _file(PAGE)


async def asset(request: Request) -> Response:
    return _file(request.path_params["name"])


routes = [
    RootRoute("/playground", page, methods=["GET", "HEAD"], name="playground"),
    RootRoute("/playground/{name}", asset, methods=["GET", "HEAD"], name="playground_asset"),
]
