"""The HTTP application of ``pggan serve``: pages (static, shipped in the package) and a JSON/PNG API."""
from __future__ import annotations

import asyncio
import contextlib
import os
import re

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from ..api import parse_class_option, parse_seeds
from ..checkpoint import CheckpointError
from ..util.errors import PgganError, UsageError
from .images import Busy, ImageService, safe_path
from .runs import find_runs, networks_of, run_detail, run_summary

STATIC = os.path.join(os.path.dirname(__file__), "static")
RUN_FILES = (".png", ".jsonl", ".json", ".txt")
PAGES = {"/": "runs.html", "/run": "run.html", "/explore": "explore.html"}


def create_app(path: str, workers: int = 2, max_images: int = 64, device="cpu") -> Starlette:
    root = os.path.abspath(path)
    service = ImageService(root, workers=workers, max_images=max_images, device=device)

    def runs() -> dict:
        return find_runs(root) if os.path.isdir(root) else {}

    def run_path(name: str) -> str:
        found = runs().get(name)
        if found is None:
            raise UsageError(f"no run '{name}' here")
        return found

    def page(request: Request):
        return FileResponse(os.path.join(STATIC, PAGES[request.url.path]))

    def static(request: Request):
        name = request.path_params["name"]
        if not re.fullmatch(r"[a-z]+\.(js|css)", name) or not os.path.isfile(os.path.join(STATIC, name)):
            return _error(404, "no such file")
        return FileResponse(os.path.join(STATIC, name))

    def api_runs(request: Request):
        return JSONResponse({"runs": [run_summary(p) for p in runs().values()]})

    def api_run(request: Request):
        return JSONResponse(run_detail(run_path(request.path_params["name"])))

    def run_file(request: Request):
        run = run_path(request.path_params["name"])
        rel = request.path_params["file"]
        return FileResponse(safe_path(run, rel, RUN_FILES))

    def api_networks(request: Request):
        if os.path.isfile(root):
            return JSONResponse({"networks": [os.path.basename(root)]})
        return JSONResponse({"networks": [f"{name}/{f}" for name, p in runs().items() for f in networks_of(p)]})

    async def image(request: Request):
        q = request.query_params
        network = q.get("network", "")
        truncate = _float(q, "truncate")
        class_idx = parse_class_option(q.get("class") or None)
        kind = request.path_params["kind"]
        if kind == "grid":
            seeds = parse_seeds(q.get("seeds", "0-15"))
            cols = _int(q, "cols") or max(1, round(len(seeds) ** 0.5))
            args = (service.seeds_grid, network, seeds, truncate, class_idx, cols)
            name = f"seeds{seeds[0]}-{seeds[-1]}.png" if len(seeds) > 1 else f"seed{seeds[0]:04d}.png"
        elif kind == "interp":
            a, b, t = _int(q, "a", 0), _int(q, "b", 1), _float(q, "t", 0.5)
            args = (service.interpolation, network, a, b, t, truncate, class_idx)
            name = f"seed{a}-seed{b}-t{t:.3f}.png"
        elif kind == "nearby":
            seed = _int(q, "seed", 0)
            args = (service.nearby, network, seed, _float(q, "strength", 0.3), _int(q, "count", 9), truncate, class_idx)
            name = f"seed{seed}-nearby.png"
        elif kind == "along":
            seed, how = _int(q, "seed", 0), q.get("kind", "principal")
            try:
                amounts = [float(v) for v in q.get("amounts", "0").split(",")]
            except ValueError:
                raise UsageError("amounts must be comma-separated numbers") from None
            args = (service.along, network, seed, how, amounts, truncate, class_idx)
            name = f"seed{seed}-{how}.png"
        else:
            return _error(404, "no such image kind")
        data = await asyncio.wrap_future(service.submit(*args))
        headers = {"Content-Disposition": f'attachment; filename="{name}"'} if q.get("download") else {}
        return Response(data, media_type="image/png", headers=headers)

    async def classes(request: Request):
        data = await asyncio.wrap_future(service.submit(service.classes, request.query_params.get("network", "")))
        return JSONResponse(data)

    async def latent(request: Request):
        q = request.query_params
        z = await asyncio.wrap_future(service.submit(service.latent, q.get("network", ""), _int(q, "seed", 0),
                                                     _float(q, "truncate")))
        return JSONResponse({"seed": _int(q, "seed", 0), "z": [round(float(v), 5) for v in z]})

    routes = [Route(p, page) for p in PAGES] + [
        Route("/static/{name}", static),
        Route("/api/runs", api_runs),
        Route("/api/runs/{name}", api_run),
        Route("/api/runs/{name}/file/{file:path}", run_file),
        Route("/api/networks", api_networks),
        Route("/api/image/{kind}", image),
        Route("/api/latent", latent),
        Route("/api/classes", classes),
    ]
    handlers = {PgganError: _bad_request, Busy: _busy, ValueError: _bad_request}
    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        service.close()

    app = Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)
    app.state.service = service
    return app


def _number(q, key: str, default, cast, what: str):
    v = q.get(key)
    if v is None or v == "":
        return default
    try:
        return cast(v)
    except ValueError:
        raise UsageError(f"{key} must be {what}, got '{v}'") from None


def _int(q, key: str, default=None):
    return _number(q, key, default, int, "a whole number")


def _float(q, key: str, default=None):
    return _number(q, key, default, float, "a number")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _bad_request(request: Request, exc: Exception) -> JSONResponse:
    status = 404 if isinstance(exc, UsageError) and "no run" in str(exc) else 400
    if isinstance(exc, CheckpointError):
        status = 422
    return _error(status, str(exc))


async def _busy(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=503, headers={"Retry-After": "1"})
