"""`cbir serve`'s web app: a FastAPI app over a SearchService (serve/service.py), plus the page.

Every error is one line of JSON, `{"error": "..."}`: 4xx for a bad request, 503 while the
collection cannot be searched, 500 `internal error` for a bug (its traceback goes to the
server's log only). Request bodies are capped (Content-Length, and counted while streaming).
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Optional, Union

from fastapi import Depends, FastAPI, File, Path as PathParam, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from cbir.errors import CbirError
from cbir.settings import Settings
from serve.service import MAX_TOP_K, BadRequest, SearchService, UnknownPoint

log = logging.getLogger("serve")

STATIC = Path(__file__).parent / "static"
MAX_BODY_BYTES = 16 * 2**20  # the whole request body, multipart overhead included
MAX_IMAGES = 100  # image fields in one request
# The page loads nothing from elsewhere (the /docs page does: Swagger UI from a CDN, so not there).
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

SEARCH_DESCRIPTION = f"""
Find the stored images nearest to each uploaded image (Euclidean distance between their codes).

Send the image as the multipart field **`image`**: any PNG, JPEG, GIF, BMP, TIFF or WebP, converted
like MNIST (grayscale, inverted when the background is light, cropped to the ink, fitted into
20x20, centred by mass in 28x28).

* **One** `image` field: the answer is **one object**, `{{"query", "match", "input", "results"}}`;
  an image that cannot be used is a 400 `{{"error": "..."}}`.
* **Several** `image` fields (a batch, at most {MAX_IMAGES}): the answer is a **JSON list**, one object per
  image in the order sent; an image that cannot be used gets `{{"query": name, "error": "..."}}` in its place.

`query` is the file name sent; `input` is the 28x28 image as the model sees it (a PNG data URL);
`match` rates the best match (`good`, `weak`, `none`; `null` until the service rates matches);
`results` are `{{"rank", "id", "label", "distance"}}`, nearest first, as `search --json` prints them.
The whole request body may be at most {MAX_BODY_BYTES // 2**20} MiB (413 otherwise).
"""


# -- response shapes, for the OpenAPI page ------------------------------------------------------

class Hit(BaseModel):
    rank: int
    id: Union[int, str] = Field(description="a point id: a number for a data set's points, a UUID for a folder's")
    label: Union[int, str, None]
    distance: float
    path: Optional[str] = Field(None, description="a folder collection's file, relative to its folder")
    class_: Optional[str] = Field(None, alias="class", description="the class name, for data sets whose labels stand for one")


class Answer(BaseModel):
    query: str
    match: Optional[str] = Field(None, description="good, weak or none: the nearest distance against what real queries get "
                                 "(null without a calibration, or with a label filter)")
    score: Optional[float] = Field(None, description="the share of real queries whose nearest neighbour was at least as far")
    input: str = Field(description="the 28x28 image as the model sees it, as a data:image/png;base64 URL")
    results: list[Hit]


class ItemError(BaseModel):
    query: str
    error: str


class ErrorBody(BaseModel):
    error: str


class Health(BaseModel):
    status: str
    collection: Optional[str] = None
    points: Optional[int] = None
    error: Optional[str] = None


class Collection(BaseModel):
    name: str
    points: Optional[int] = Field(None, description="null when it could not be counted (another process has it open)")
    model_id: Optional[str]
    encoder: Optional[str]
    dataset: Optional[str]
    complete: bool
    serving: bool = Field(description="the collection this server searches")


class Info(BaseModel):
    collection: str
    encoder: str
    dataset: str
    model_id: str
    points: int
    labels: list[Union[int, str]]
    class_names: dict[str, str] = Field(description="label -> name, for data sets whose labels are not names")
    limits: dict[str, int]


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in {400: "bad request", 422: "bad parameters", 503: "the collection cannot be searched now"}.items()
}


# -- errors as one line of JSON ---------------------------------------------------------------

def one_line(text: object) -> str:
    return " ".join(str(text).split()) or "error"


def error(status: int, message: object, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": one_line(message)}, status_code=status, headers=headers)


class BodyTooLarge(HTTPException):
    """Raised from inside receive() when a streamed body passes the cap (FastAPI passes HTTPExceptions through)."""

    def __init__(self, limit: int):
        super().__init__(413, f"request body too large: the limit is {_size(limit)}")


def _size(n: int) -> str:
    return f"{n // 2**20} MiB" if n >= 2**20 and n % 2**20 == 0 else f"{n} bytes"


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header") and not isinstance(p, int)]
        msg = str(err.get("msg", "invalid")).replace("Field required", "field required")
        given = err.get("input")
        if "Expected UploadFile" in msg:
            msg, given = "must be a file (a multipart file part), not a text field", None
        where = ".".join(loc) or "request"
        if isinstance(given, (str, int, float)) and not isinstance(given, bool) and len(str(given)) <= 40 and "required" not in msg:
            msg += f" (got {given!r})"
        parts.append(f"{where}: {msg}")
    return "; ".join(parts) or "invalid request"


class Guard:
    """Pure ASGI middleware: the body cap, and a one-line 500 for anything unexpected."""

    def __init__(self, app, max_body_bytes: int = MAX_BODY_BYTES):
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        declared = next((v for k, v in scope.get("headers", ()) if k == b"content-length"), None)
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                await error(400, "bad Content-Length header")(scope, receive, send)
                return
            if length > limit:  # refused before a byte of the body is read
                await error(413, BodyTooLarge(limit).detail, {"Connection": "close"})(scope, receive, send)
                return

        received = 0
        started = False

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:  # chunked, or more than Content-Length claimed
                    raise BodyTooLarge(limit)
            return message

        async def watched_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except Exception as exc:
            if started:
                log.exception("error after the response started: %s %s", scope.get("method"), scope.get("path"))
                raise
            if _is_body_too_large(exc):
                await error(413, BodyTooLarge(limit).detail, {"Connection": "close"})(scope, receive, send)
                return
            log.exception("unexpected error: %s %s", scope.get("method"), scope.get("path"))
            await error(500, "internal error")(scope, receive, send)


def _is_body_too_large(exc: BaseException) -> bool:
    if isinstance(exc, BodyTooLarge):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(_is_body_too_large(e) for e in exc.exceptions)
    return _is_body_too_large(exc.__cause__) if exc.__cause__ is not None else False


# -- the app ------------------------------------------------------------------------------------

def parse_point_id(text: str):
    """A point id from a URL: a number (a data set's points) or a UUID (a folder's); 422 otherwise."""
    from cbir import ids

    try:
        return ids.parse(text)
    except ValueError:
        if text.lstrip("-").isdigit():  # a number, but one no point can have
            raise UnknownPoint(f"no point {text}") from None
        raise HTTPException(422, f"point_id: {text[:40]!r} is not a point id (a number, or a UUID)") from None


def service_dep(request: Request) -> SearchService:
    """The app's service, or 503 while there is none that can answer."""
    svc = request.app.state.service
    if svc is None or not svc.ready():
        raise HTTPException(503, f"service unavailable: {request.app.state.startup_error or 'not ready'}")
    return svc


Service = Annotated[SearchService, Depends(service_dep)]


def create_app(settings: Settings | None = None, service: SearchService | None = None, *,
               max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    """The ASGI app. It owns its service: the one given, or one opened from settings (default: the env)
    at start-up, and closes it at shutdown. A service that cannot open leaves the app up and /healthz at 503.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if app.state.service is None:
            try:
                app.state.service = await run_in_threadpool(SearchService, settings or Settings.from_env())
                app.state.startup_error = None
            except CbirError as exc:
                app.state.startup_error = one_line(exc)
                log.error("cannot serve: %s", app.state.startup_error)
        try:
            yield
        finally:
            svc, app.state.service = app.state.service, None
            if svc is not None:
                await run_in_threadpool(svc.close)

    app = FastAPI(
        title="cbir",
        summary="Content-based image retrieval: find the stored images most like yours.",
        version=_version(),
        lifespan=lifespan,
        responses={500: {"model": ErrorBody, "description": 'a bug: {"error": "internal error"}'}},
    )
    app.state.service = service
    app.state.startup_error = None
    app.state.max_body_bytes = max_body_bytes
    app.add_middleware(Guard, max_body_bytes=max_body_bytes)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException):
        if exc.status_code in (204, 304):
            return Response(status_code=exc.status_code)
        detail = f"not found: {request.url.path}" if exc.status_code == 404 and exc.detail == "Not Found" else exc.detail
        return error(exc.status_code, detail, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        return error(422, _validation_message(exc))

    @app.exception_handler(BadRequest)
    async def _bad_request(request: Request, exc: BadRequest):
        return error(400, exc)

    @app.exception_handler(UnknownPoint)
    async def _unknown_point(request: Request, exc: UnknownPoint):
        return error(404, exc)

    @app.exception_handler(CbirError)
    async def _unavailable(request: Request, exc: CbirError):  # the store or the data, not the request
        return error(503, exc)

    @app.post(
        "/api/search",
        summary="Search with one image, or a batch",
        description=SEARCH_DESCRIPTION,
        response_model=None,
        responses={
            200: {"model": Union[Answer, list[Union[Answer, ItemError]]],
                  "description": "one object for one image; a list, in order, for several"},
            **ERRORS,
            413: {"model": ErrorBody, "description": f"body over {_size(max_body_bytes)}"},
        },
        openapi_extra={"x-batch": "several `image` fields -> a JSON list, one object per image, in order"},
    )
    def search(
        service: Service,
        image: Annotated[list[UploadFile], File(description="the query image; repeat the field for a batch")],
        top_k: Annotated[int, Query(ge=1, le=MAX_TOP_K, description="results per image")] = 10,
        label: Annotated[Optional[str], Query(max_length=255, description="only results with this label (a digit for MNIST; a subfolder's name for a folder collection)")] = None,
        exact: Annotated[bool, Query(description="exact search over every point; false (the default) uses the collection's HNSW index (recall@10 >= 0.99, measured)")] = False,
    ):
        if len(image) > MAX_IMAGES:
            raise BadRequest(f"too many images: at most {MAX_IMAGES} per request (got {len(image)})")
        files = [(f.filename or "image", f.file.read()) for f in image]
        answers = service.search(files, top_k=top_k, label=label, exact=exact)
        if len(files) == 1:
            if "error" in answers[0]:
                return error(400, answers[0]["error"])
            return JSONResponse(answers[0])
        return JSONResponse(answers)

    @app.get("/api/points/{point_id}/image.png", summary="The stored image of a point",
             response_class=Response,
             responses={200: {"content": {"image/png": {}}, "description": "a 28x28 grayscale PNG"},
                        404: {"model": ErrorBody, "description": "no such point"}, **ERRORS})
    def point_image(service: Service, point_id: Annotated[str, PathParam(description="a point id, as in results: a number, or a UUID")]):
        pid = parse_point_id(point_id)
        png = service.point_image_png(pid)
        # A data set's point ids are stable (data set, split, index): the image behind one never changes.
        # A folder's point is a file, which may change under the same id.
        cache = "public, max-age=86400" if isinstance(pid, int) else "no-cache"
        return Response(png, media_type="image/png", headers={"Cache-Control": cache})

    @app.get("/api/collections", summary="The collections in the store", response_model=list[Collection],
             responses=ERRORS)
    def collections(service: Service):
        return JSONResponse(service.collections())

    @app.get("/api/info", summary="The collection being served, its labels and the limits", response_model=Info,
             responses=ERRORS)
    def info(service: Service, request: Request):
        limits = {"max_top_k": MAX_TOP_K, "max_images": MAX_IMAGES, "max_body_bytes": request.app.state.max_body_bytes}
        return JSONResponse({**service.info(), "limits": limits})

    @app.get("/healthz", summary="200 once the store is open and the model loaded, 503 otherwise",
             response_model=Health, response_model_exclude_none=True,
             responses={503: {"model": Health, "description": "not ready"}})
    def healthz(request: Request):
        svc = request.app.state.service
        if svc is None or not svc.ready():
            reason = request.app.state.startup_error or "not ready"
            return JSONResponse({"status": "unavailable", "error": reason}, status_code=503)
        info = svc.info()
        return {"status": "ok", "collection": info["collection"], "points": info["points"]}

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC / "index.html", media_type="text/html", headers=PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _version() -> str:
    from cbir import __version__

    return __version__
