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


@router.api_route("/", methods=["GET", "HEAD"])
async def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers=HEADERS)


def _static_path(name: str) -> Path | None:
    """The file ``name`` inside static/, or None (no '..' escapes, no folders)."""
    try:
        path = (STATIC_DIR / name).resolve()
        if path.is_relative_to(STATIC_DIR) and path.is_file():
            return path
    except (ValueError, OSError):  # a NUL byte, a name too long for the file system
        pass
    return None


@router.api_route("/static/{name:path}", methods=["GET", "HEAD"])
async def static_file(name: str) -> FileResponse:
    path = _static_path(name)
    if path is None:
        raise APIError(404, f"no static file {name[:200]!r}", code="not_found")
    return FileResponse(path, headers=HEADERS)
