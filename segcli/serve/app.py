"""The Starlette application of `segcli serve`: one loaded engine behind an HTTP API and a web page.

Routes: `POST /v1/segment` (an image in, one output kind's bytes out, the same bytes `segcli predict`
writes), `GET /v1/models`, `GET /healthz`, `GET /metrics`, `GET /openapi.json` and the page at `/`.
Decoding and encoding run in Starlette's thread pool; the model runs on the batcher's one thread.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from segcli.errors import InputImageError, SegcliError, with_hint
from segcli.imageio import DEFAULT_MAX_PIXELS, load_image_bytes
from segcli.outputs.classwise import class_file_labels, kept_classes, present_classes, require_pycocotools
from segcli.outputs.kinds import KINDS
from segcli.palettes import display_palette, flat_palette
from segcli.pipeline.stream import prediction_to_bytes, result_and_run
from segcli.serve.batcher import Batcher, Busy
from segcli.serve.metrics import ServeMetrics
from segcli.serve.openapi import openapi_schema
from segcli.serve.page import PAGE
from segcli.serve.uploads import KIND_TYPES, Ask, Refused, body_limit, image_upload, masks_zip, parse_ask
from segcli.text import printable

if TYPE_CHECKING:
    from segcli.engine import SegmentationEngine

LOG = logging.getLogger("segcli.serve")
OPEN_ROUTES = ("/healthz", "/")  # answered without the token: liveness, and the page (static, it holds no data)
ROUTES = ("/", "/healthz", "/metrics", "/openapi.json", "/v1/models", "/v1/segment")
PRECISION_HEADER = "X-Segcli-Precision"  # `fp32`, `bf16 CL`: the precision and memory format the image ran in
REPLICA_HEADER = "X-Segcli-Replica"  # which Ray Serve replica answered (segcli serve --engine ray only)


@dataclass(frozen=True)
class ServeSettings:
    """How the server batches, limits and protects."""

    max_batch: int = 4
    batch_wait_ms: float = 5.0
    max_pending: int = 32          # requests in progress (read, decoded, queued, running); one more: 503
    timeout_s: float = 60.0        # per request; past it 504
    max_pixels: int = DEFAULT_MAX_PIXELS
    token: str | None = None       # bearer token every route but OPEN_ROUTES needs
    alpha: float = 0.5             # overlay opacity
    retry_after_s: int = 1         # said with a 503
    replica: str | None = None     # a Ray Serve replica's id: the X-Segcli-Replica header and /metrics say it

    @property
    def body_limit(self) -> int:
        return body_limit(self.max_pixels)


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class Service:
    """The engine, its batcher and the counters, shared by the routes."""

    def __init__(self, engine: "SegmentationEngine", settings: ServeSettings) -> None:
        self.engine, self.settings = engine, settings
        self.metrics = ServeMetrics(settings.max_batch, settings.replica)
        self.batcher = Batcher(self._predict_batch, settings.max_batch, settings.batch_wait_ms / 1000.0,
                               settings.max_pending, on_batch=self.metrics.batch)
        self.categories = tuple(engine.record.categories)
        self.active = 0  # POST /v1/segment requests in progress (on the event loop: no lock needed)

    def _predict_batch(self, images, probabilities: bool):
        return self.engine.predict_batch(images, return_probabilities=probabilities)

    async def segment(self, request: Request) -> Response:
        """One request, counted from its first byte: uploads being read or decoded hold memory too, so they
        count against max_pending with the images waiting for the model."""
        if self.active >= self.settings.max_pending:
            return _busy(f"{self.active} requests are already in progress", self.settings.retry_after_s)
        self.active += 1
        try:
            return await self._segment(request)
        finally:
            self.active -= 1

    async def _segment(self, request: Request) -> Response:
        started = time.perf_counter()
        try:
            ask = parse_ask(dict(request.query_params), self.categories)
            if ask.kind == "rle":
                _require_rle()
            data, name = await image_upload(request, self.settings.body_limit)
            loaded = await run_in_threadpool(load_image_bytes, data, name, self.settings.max_pixels)
            decoded = time.perf_counter()
            job = await self.batcher.submit(loaded.rgb, probabilities=ask.kind == "probs")
            prediction = await self._wait(job, started)
            body = await run_in_threadpool(self.render, loaded, prediction, ask)
        except Refused as exc:
            return error(exc.status, exc.message, exc.headers)
        except Busy as exc:
            return _busy(str(exc), self.settings.retry_after_s)
        except InputImageError as exc:
            return error(400, printable(with_hint(exc)))
        except SegcliError as exc:
            return error(500, printable(with_hint(exc)))
        except Exception as exc:  # a bug, not the client's: logged with its traceback, answered, the server goes on
            LOG.exception("POST /v1/segment failed")
            return error(500, f"internal error: {printable(type(exc).__name__)}: {printable(str(exc))}")
        done = time.perf_counter()
        timing = (f"decode;dur={(decoded - started) * 1000:.1f}, queue;dur={(job.started - job.queued) * 1000:.1f}, "
                  f"model;dur={(job.finished - job.started) * 1000:.1f}, encode;dur={(done - job.finished) * 1000:.1f}")
        headers = {"Server-Timing": timing, "X-Segcli-Batch-Size": str(job.batch_size)}
        if prediction.plan is not None:  # what this image ran in (after --precision auto's execution policy)
            headers[PRECISION_HEADER] = prediction.plan.text
        return Response(body, media_type=KIND_TYPES[ask.kind], headers=headers)

    async def _wait(self, job, started: float):
        """The job's prediction, or 504 when the request's time runs out first (its batch dropped if not begun)."""
        left = self.settings.timeout_s - (time.perf_counter() - started)
        try:
            prediction = await asyncio.wait_for(asyncio.shield(job.future), max(left, 0.0))
        except asyncio.TimeoutError:
            job.future.cancel()
            raise Refused(504, f"no answer within {self.settings.timeout_s:g} s (the model is busy or the image "
                               "is large); retry, or start the server with a longer --timeout") from None
        job.finished = time.perf_counter()
        return prediction

    def render(self, loaded, prediction, ask: Ask) -> bytes:
        """The bytes `segcli predict` writes for this kind; masks: a zip of its per-class PNGs."""
        if ask.kind != "masks":
            return prediction_to_bytes(self.engine, loaded, prediction, ask.kind, self.settings.alpha, ask.classes)
        result, run = result_and_run(self.engine, loaded, prediction, self.settings.alpha, ask.classes)
        labels = class_file_labels(run.categories)
        present = set(present_classes(result.labels, len(run.categories)))
        files = []
        for index in (index for index in kept_classes(run) if index in present):
            buffer = _Buffer()
            KINDS["masks"].write(result, run, buffer, class_index=index)
            files.append((labels[index], buffer.getvalue()))
        return masks_zip(PurePosixPath(loaded.path.name).stem, files)

    def model_document(self) -> dict:
        from segcli.execution_policy import ran_in

        engine, record = self.engine, self.engine.record
        precision, memory_format = ran_in(engine.plan, engine.policy)  # after the execution policy chose
        palette = flat_palette(display_palette(record.palette, record.dataset), len(record.categories))
        return {
            "model": record.model, "checkpoint": record.name, "checkpoint_source": engine.source,
            "dataset": record.dataset, "device": str(engine.plan.device), "precision": precision,
            "memory_format": memory_format,
            "crf": engine.options.crf is not None,
            "classes": [{"index": index, "name": name, "color": [int(c) for c in palette[3 * index:3 * index + 3]]}
                        for index, name in enumerate(record.categories)],
            "outputs": list(KIND_TYPES), "max_batch": self.settings.max_batch,
            "max_pixels": self.settings.max_pixels, "max_body_bytes": self.settings.body_limit,
        }


def _busy(reason: str, retry_after_s: int) -> Response:
    return error(503, f"busy: {reason}; retry later", {"Retry-After": str(retry_after_s)})


class _Buffer:
    """A bytes sink for the output kinds' writers (io.BytesIO's one method they use)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def getvalue(self) -> bytes:
        return b"".join(self.parts)


def _require_rle() -> None:
    try:
        require_pycocotools()
    except SegcliError as exc:
        raise Refused(501, printable(str(exc))) from None


class Guard:
    """ASGI middleware: the bearer token (401 without it) and the request counters by route and status."""

    def __init__(self, app, service: Service) -> None:
        self.app, self.service = app, service
        token, replica = service.settings.token, service.settings.replica
        self.expected = None if token is None else f"Bearer {token}".encode()
        self.named = () if replica is None else ((REPLICA_HEADER.lower().encode(), replica.encode("latin-1")),)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        route = path if path in ROUTES else "other"
        started, status = time.perf_counter(), [500]

        async def counted(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                if self.named:
                    message = {**message, "headers": [*message.get("headers", ()), *self.named]}
            await send(message)

        try:
            if self._allowed(scope, path):
                await self.app(scope, receive, counted)
            else:
                await error(401, "this server needs a token: send the header Authorization: Bearer <token>",
                            {"WWW-Authenticate": "Bearer"})(scope, receive, counted)
        finally:
            timed = route == "/v1/segment" and scope["method"] == "POST"
            seconds = time.perf_counter() - started if timed else None
            self.service.metrics.request(route, status[0], seconds)

    def _allowed(self, scope, path: str) -> bool:
        if self.expected is None or path in OPEN_ROUTES:
            return True
        given = dict(scope.get("headers") or ()).get(b"authorization", b"")
        return hmac.compare_digest(given, self.expected)


def build_app(engine: "SegmentationEngine", settings: ServeSettings | None = None) -> Starlette:
    """The application around a loaded engine; the batcher starts and drains with the app's lifespan."""
    from contextlib import asynccontextmanager

    service = Service(engine, settings or ServeSettings())
    models = service.model_document()

    @asynccontextmanager
    async def lifespan(app):
        service.batcher.start()
        try:
            yield
        finally:
            await service.batcher.close()  # every accepted image is answered first

    async def page(request: Request) -> Response:
        return HTMLResponse(PAGE)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "model": models["model"], "checkpoint": models["checkpoint"]})

    async def metrics(request: Request) -> Response:
        return PlainTextResponse(service.metrics.text(service.batcher.pending),
                                 media_type="text/plain; version=0.0.4; charset=utf-8")

    routes = [
        Route("/", page), Route("/healthz", healthz), Route("/metrics", metrics),
        Route("/openapi.json", lambda request: JSONResponse(openapi_schema(models))),
        Route("/v1/models", lambda request: JSONResponse(service.model_document())),  # precision: what ran
        Route("/v1/segment", service.segment, methods=["POST"]),
    ]
    async def http_error(request: Request, exc: HTTPException) -> Response:  # 404, 405: JSON like every error
        return error(exc.status_code, f"{exc.detail}: {request.method} {printable(request.url.path)}", exc.headers)

    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error})
    app.add_middleware(Guard, service=service)
    app.state.service = service
    return app
