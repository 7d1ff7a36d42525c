"""The investigators' console: one FastAPI app serving the HTML pages and the JSON API.

    create_app(db_url, blobs_root, *, secure_cookies=False) -> FastAPI

Layers, outermost first: security headers on every response; the login gate (deny by default,
see console.deps); the routes (console.pages, console.api). Errors come back as an HTML page on
pages and as JSON ({"detail": ...}) under /api.
"""
from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.templating import Jinja2Templates

from console.actions import ConsoleContext
from console.deps import LoginGate, SecurityHeaders, is_api
from console.hardening import Hardening, console_secret
from console.image_search import SearchLimits
from evidence.takedown import load_takedown_config
from storage.blobs import BlobStore
from storage.db import Store

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"


def make_templates() -> Jinja2Templates:
    # Autoescape everything: post texts, accounts and URLs are written by whoever posted them.
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True, default_for_string=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["when"] = lambda v: "" if v is None else v.strftime("%Y-%m-%d %H:%M:%S UTC")
    env.filters["num"] = lambda v, digits=2: "" if v is None else f"{v:.{digits}f}"
    env.filters["yesno"] = lambda v: "unknown" if v is None else ("yes" if v else "no")
    return Jinja2Templates(env=env)


def create_app(db_url: str, blobs_root: str, *, secure_cookies: bool = False,
               packets_root: str | None = None, takedown_config: str | None = None,
               key_dir: str | None = None, tsa_url: str | None = None) -> FastAPI:
    """The console for one database and blob store.

    packets_root: where takedown packets are written (default: `packets` beside the blob store);
    takedown_config: the deployment's takedown YAML (default: evidence/templates/takedown-default.yaml);
    key_dir: the Ed25519 key folder (default: DEEPWATCH_KEY_DIR or var/keys);
    tsa_url: an RFC 3161 authority for re-seals after a review (default: DEEPWATCH_TSA_URL).
    """
    from console import api, pages, references

    store = Store(db_url)
    blobs = BlobStore(blobs_root)
    ctx = ConsoleContext(
        store=store,
        blobs=blobs,
        packets_root=Path(packets_root).expanduser().resolve() if packets_root else blobs.root.parent / "packets",
        takedown_config=load_takedown_config(takedown_config),  # a bad file fails here, not mid-request
        secure_cookies=secure_cookies,
        key_dir=Path(key_dir) if key_dir else None,
        tsa_url=tsa_url or os.environ.get("DEEPWATCH_TSA_URL") or None,
    )
    # FastAPI's own /docs, /redoc and /openapi.json are off: they would be public, and Swagger
    # UI needs inline scripts and a CDN. console.api serves both behind the login instead.
    app = FastAPI(title="deepwatch console", version="1", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.console = ctx
    app.state.templates = make_templates()

    app.include_router(pages.public_router)
    app.include_router(pages.router)
    app.include_router(api.router)
    app.include_router(references.router)  # /references (the reference library)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    # add_middleware puts each new layer outside the previous: the headers wrap the gate.
    app.add_middleware(LoginGate, store=store)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(Hardening, secure_cookies=secure_cookies)  # outermost: ids, slashes, caching (issue 16)
    app.state.console_secret = console_secret()
    app.state.search_limits = SearchLimits()  # image searches: concurrency cap and per-user rate  # signs login CSRF tokens; a short configured one fails here
    return app


async def _http_error(request: Request, exc: StarletteHTTPException):
    headers = getattr(exc, "headers", None)
    if is_api(request.url.path):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)
    return _error_page(request, exc.status_code, str(exc.detail), headers)


async def _validation_error(request: Request, exc: RequestValidationError):
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'request'}: {e['msg']}" for e in exc.errors())
    if is_api(request.url.path):
        return JSONResponse({"detail": problems, "errors": exc.errors()}, status_code=422)
    return _error_page(request, 400, problems, None)


def _error_page(request: Request, status: int, message: str, headers: dict | None):
    templates: Jinja2Templates | None = getattr(request.app.state, "templates", None)
    if templates is None:
        return PlainTextResponse(message, status_code=status, headers=headers)
    from console.pages import base_context

    return templates.TemplateResponse(request, "error.html", base_context(request) | {"status": status, "message": message},
                                      status_code=status, headers=headers)
