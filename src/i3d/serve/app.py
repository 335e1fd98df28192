"""The HTTP service: POST /v1/predict (multipart upload), GET /v1/models, GET /healthz, GET / (the page).

The model loads once per process. Work runs in a thread pool off the event loop; at most ``queue_size``
requests wait or run at once and the next one is answered 429 with Retry-After. Uploads stream to a
temporary file, are refused with 413 as soon as they pass the size limit, and are always removed;
clients never name a server-side path. Each prediction has a time limit (504 past it).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, File, Form, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse

from i3d.errors import I3DError
from i3d.settings import ServeConfig

ACCEPTED_TYPES = ("video/", "application/octet-stream", "image/gif")
CHUNK = 1 << 20
CUDA_THREADS = 4  # requests decoding at once beside a GPU, their clips gathered into shared network calls


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class PredictionService:
    """What the routes share: the classifier (loaded once per process), the count of requests in flight,
    the thread pool the predictions run in, and the limits of ``config``."""

    def __init__(self, config: ServeConfig, classifier=None) -> None:
        from i3d.devices import parse_device

        self.config, self.classifier, self.busy = config, classifier, 0
        self.lock = threading.Lock()
        self.threads = config.threads or (CUDA_THREADS if parse_device(config.device).type == "cuda" else 1)
        self.executor = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="i3d-predict")
        if classifier is not None:
            self._sharing(classifier)

    def _sharing(self, classifier):
        """Requests decode side by side and their clips share network calls, where several run at once."""
        if self.threads > 1:
            classifier.share_calls(classifier.batch_size * self.threads)
        return classifier

    def model(self):
        with self.lock:  # loaded once per process, on first use (or at startup)
            if self.classifier is None:
                from i3d.predict import Classifier

                self.classifier = self._sharing(Classifier(self.config.weights, self.config.device,
                                                          precision=self.config.precision,
                                                          runtime=self.config.runtime))
            return self.classifier

    def describe(self) -> dict:
        classifier = self.model()
        return {"models": [{"name": classifier.weights["rgb"].name, "stream": classifier.stream,
                            "classes": len(classifier.labels), "multi_label": classifier.multi_label,
                            "labels": classifier.labels, "device": str(classifier.device),
                            "type": type(classifier.models["rgb"]).__name__}]}

    async def store_upload(self, file: UploadFile) -> Path | JSONResponse:
        """The upload streamed to a temporary file (the caller removes it), or the error response: too large
        (413, as soon as it passes the limit), no room (507) or empty (400)."""
        suffix = Path(file.filename or "upload").suffix[:16] if file.filename else ""
        try:
            fd, name = tempfile.mkstemp(prefix="i3d-upload-", suffix=suffix if suffix.isascii() else "")
        except OSError as error:  # the server's temporary folder is full or gone: the server's problem
            return _error(507, f"the server could not store the upload ({error.strerror or error})")
        path = Path(name)
        try:
            size, limit = 0, int(self.config.max_upload_mb * 2**20)
            with os.fdopen(fd, "wb") as out:
                while chunk := await file.read(CHUNK):
                    size += len(chunk)
                    if size > limit:
                        path.unlink(missing_ok=True)
                        return _error(413, f"the upload passed {self.config.max_upload_mb:g} MB (--max-upload-mb)")
                    out.write(chunk)
        except OSError as error:
            path.unlink(missing_ok=True)
            return _error(507, f"the server could not store the upload ({error.strerror or error})")
        if size == 0:
            path.unlink(missing_ok=True)
            return _error(400, "the upload is empty")
        return path

    async def predict(self, path: Path, filename: str, top_k: int, start: float | None, end: float | None,
                      timeline: bool) -> dict | JSONResponse:
        """The prediction off the event loop, within the time limit; errors as JSON naming the upload, never
        a server-side path."""
        work = asyncio.get_running_loop().run_in_executor(self.executor, _predict, self.model(), path, top_k,
                                                          start, end, timeline)
        try:
            return await asyncio.wait_for(work, self.config.timeout_s)
        except asyncio.TimeoutError:
            return _error(504, f"the prediction took longer than {self.config.timeout_s:g} s")
        except I3DError as error:
            return _error(422, str(error).replace(str(path), filename))
        except Exception as error:  # a fault of ours: still JSON, and never a server-side path
            message = f"{type(error).__name__}: {error}".replace(str(path), filename)
            return _error(500, f"the prediction failed ({message})")


FORM_OVERHEAD = 1 << 16  # bytes of multipart framing and form fields allowed beside the file itself


class UploadGuard:
    """Pure ASGI middleware in front of everything: a request body larger than the upload limit is refused
    with 413 as its Content-Length says so, or as its bytes pass the limit (before the framework spools it to
    disk), and a client that sends nothing for ``idle_s`` seconds mid-body (a slow-loris upload) gets 408;
    either way the app sees the client gone and its temporary files are removed."""

    def __init__(self, app, limit_bytes: int, idle_s: float) -> None:
        self.app, self.limit, self.idle_s = app, limit_bytes + FORM_OVERHEAD, idle_s

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length", b"").decode("latin-1")
        if length.isdigit() and int(length) > self.limit:
            await self._answer(send, 413, f"the upload (by its length) passed {(self.limit - FORM_OVERHEAD) / 2**20:g} "
                                          "MB (--max-upload-mb)")
            return
        state = {"received": 0, "answered": False, "started": False}

        async def guarded_receive():
            if state["answered"]:
                return {"type": "http.disconnect"}
            try:
                message = await asyncio.wait_for(receive(), self.idle_s)
            except TimeoutError:
                await self._refuse(state, send, 408, f"the upload sent nothing for {self.idle_s:g} s "
                                                     "(--upload-idle-timeout)")
                return {"type": "http.disconnect"}
            state["received"] += len(message.get("body", b""))
            if state["received"] > self.limit:
                await self._refuse(state, send, 413, f"the upload passed {(self.limit - FORM_OVERHEAD) / 2**20:g} MB "
                                                     "(--max-upload-mb)")
                return {"type": "http.disconnect"}
            return message

        async def guarded_send(message) -> None:
            if state["answered"]:
                return  # this guard answered already: the app's late reply goes nowhere
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        await self.app(scope, guarded_receive, guarded_send)

    async def _refuse(self, state: dict, send, status: int, message: str) -> None:
        if not state["started"]:
            await self._answer(send, status, message)
        state["answered"] = True

    @staticmethod
    async def _answer(send, status: int, message: str) -> None:
        import json

        body = json.dumps({"error": message}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def create_app(config: ServeConfig | None = None, classifier=None) -> FastAPI:
    """The app; ``classifier`` (an ``i3d.predict.Classifier``) is built from ``config`` when not given."""
    service = PredictionService(config or ServeConfig(), classifier)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await asyncio.get_running_loop().run_in_executor(service.executor, service.model)  # loaded before serving
        yield
        service.executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="i3d", description="I3D video action recognition: upload a video, get its classes.",
                  version="1", lifespan=lifespan)
    app.add_middleware(UploadGuard, limit_bytes=int(service.config.max_upload_mb * 2**20),
                       idle_s=service.config.upload_idle_s)

    @app.middleware("http")
    async def authorise(request, call_next):
        """With a token, every /v1/ call must carry it (compared in constant time); the page and /healthz stay
        open, and the page asks for the token once."""
        token = service.config.token
        if token is not None and request.url.path.startswith("/v1/"):
            given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), token.encode()):
                return _error(401, "this server needs its token: send the header Authorization: Bearer <token>",
                              {"WWW-Authenticate": "Bearer"})
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid_form(request, error: RequestValidationError) -> JSONResponse:
        """Every error is {"error": "..."}, a form field's too (FastAPI's own shape is {"detail": [...]})."""
        return _error(422, "; ".join(f"{'.'.join(map(str, e['loc'][1:])) or 'request'}: {e['msg']}"
                                     for e in error.errors()))

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok", "busy": service.busy, "queue_size": service.config.queue_size}

    @app.get("/v1/models")
    async def models() -> dict:
        return service.describe()

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return resources.files("i3d.serve").joinpath("page.html").read_text()

    @app.post("/v1/predict")
    async def predict(file: Annotated[UploadFile, File()], top_k: Annotated[int, Form()] = 5,
                      start: Annotated[float | None, Form()] = None, end: Annotated[float | None, Form()] = None,
                      timeline: Annotated[bool, Form()] = False):
        content_type = (file.content_type or "").lower()
        if not content_type.startswith(ACCEPTED_TYPES):
            return _error(415, f"content type {content_type or 'none'!r} is not a video; send video/* "
                               "(or application/octet-stream)")
        if not 1 <= top_k <= 1000:
            return _error(422, f"top_k must be between 1 and 1000, not {top_k}")
        if service.busy >= service.config.queue_size:
            return _error(429, f"{service.busy} requests are already waiting or running; try again shortly",
                          {"Retry-After": "5"})
        service.busy += 1
        try:
            stored = await service.store_upload(file)
            if isinstance(stored, JSONResponse):
                return stored
            try:
                return await service.predict(stored, file.filename or "the upload", top_k, start, end, timeline)
            finally:
                stored.unlink(missing_ok=True)
        finally:
            service.busy -= 1

    return app


def _predict(classifier, path: Path, top_k: int, start: float | None, end: float | None, timeline: bool) -> dict:
    """The same JSON as ``i3d predict --json`` (plus ``timeline`` when asked)."""
    import json

    prediction = classifier.predict(path, start, end)
    result = json.loads(prediction.to_json(top_k))
    if timeline:
        from i3d.timeline import compute_timeline

        result["timeline"] = compute_timeline(classifier, path, start_s=start, end_s=end).to_dict(top_k)
    return result


def app_from_environment() -> FastAPI:
    """The app of ``i3d serve`` (uvicorn's factory, once per worker process): settings from the command line."""
    import json

    return create_app(ServeConfig(**json.loads(os.environ.get("I3D_SERVE_CONFIG", "{}"))))
