"""The web page at `/`: static files shipped in the package (no build step, no CDN).

Everything the page loads comes from this server; the Content-Security-Policy
says so to the browser too, so a stray external link would fail loudly.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from genarm.server.errors import APIError

STATIC_DIR = Path(__file__).resolve().parent / "static"

# Files change with the package, not per deployment: revalidate each load.
HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
}

router = APIRouter(include_in_schema=False)


@router.get("/")
async def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers=HEADERS)


@router.get("/static/{name:path}")
async def static_file(name: str) -> FileResponse:
    path = (STATIC_DIR / name).resolve()
    # Only files inside static/ (no '..' escapes, no folders).
    if not path.is_relative_to(STATIC_DIR) or not path.is_file():
        raise APIError(404, f"no static file {name!r}", code="not_found")
    return FileResponse(path, headers=HEADERS)
