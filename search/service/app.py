"""The HTTP API and the listening page over one warm Engine.

Routes only parse, call the library (Engine, ZeroShotClassifier) and shape JSON; the library's domain
errors become HTTP statuses in one exception handler (search.service.errors.status_for).
"""

import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, File, Form, Header, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.trustedhost import TrustedHostMiddleware

from db.filters import SearchFilter
from indexer.errors import QueryError, ResoundError
from indexer.media.decode import DecodeLimits
from indexer.text import printable
from search.classify import FileLabels, LabelScore, ZeroShotClassifier
from search.engine import MAX_QUERY_CHARS, Engine, Hit
from search.prompts import (
    STRATEGIES,
    LabelSet,
    PromptError,
    builtin_label_sets,
    default_bank_for,
    load_label_set,
)
from search.service.config import ServiceConfig
from search.service.errors import NotFoundError, RangeNotSatisfiableError, ServiceError, status_for
from search.service.filter_params import form_filter, query_filter
from search.service.media import MAX_ID, CorpusMedia, byte_range, read_bytes
from search.service.schemas import (
    ClassifyResponse,
    DuplicateGroupOut,
    DuplicateMemberOut,
    DuplicatesResponse,
    ErrorOut,
    HitOut,
    InfoResponse,
    LabelOut,
    LimitsOut,
    ModelOut,
    SearchResponse,
    WindowLabelsOut,
    WindowOut,
)
from search.service.thumbnails import ThumbnailCache, read_span, waveform_png
from search.service.uploads import (
    MULTIPART_OVERHEAD_BYTES,
    BodySizeLimitMiddleware,
    check_clip,
    stored_upload,
)
from search.validation import LabelLimitError, label_limits, label_list, one_of

STATIC_DIR = Path(__file__).with_name("static")
PER_WINDOW = "rank windows rather than files: a file may appear several times"
MODE = ("hybrid: the words of file names, folders and tags (BM25) fused with the sound ranking (reciprocal rank "
        "fusion); vector: sound alone; keyword: words alone")
EXCLUDE_SELF = "leave out an indexed file with the clip's bytes (by default it ranks first)"

# The page loads nothing from elsewhere (the machine may be offline, and a CDN would see every query).
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
                           "style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; "
                           "base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
DEFAULT_CONFIG = ServiceConfig()
Strategy = Literal["label", "clap", "templates", "reclap"]
# Refusals with a `detail` string. 422 is FastAPI's own (HTTPValidationError: `detail` is a list of
# {loc, msg, type}), which the service's own validation refusals (label limits) answer with too.
_ERRORS = {status: {"model": ErrorOut} for status in (400, 404, 413)}
_MEDIA_ERRORS = {**_ERRORS, 403: {"model": ErrorOut, "description": "the file resolves outside its corpus"}}


def _without_null(field: dict[str, Any]) -> dict[str, Any]:
    """`field`'s schema without its null alternative (anyOf [type, null] -> type)."""
    options = [o for o in field.get("anyOf", []) if o != {"type": "null"}]
    if len(options) != 1 or len(field["anyOf"]) != 2:
        return field
    return {**options[0], **{k: v for k, v in field.items() if k != "anyOf" and not (k == "default" and v is None)}}


def _optional_fields_without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document with optional query, header and form fields typed as what they are when given.

    FastAPI writes an optional parameter as anyOf [type, null], but neither a query string, a header nor
    multipart/form-data can carry a null: a client leaves the field out. Declared nullable, it invites
    the text "null", which the server refuses (a schema-driven fuzzer finds exactly that mismatch).
    """
    components = schema.get("components", {}).get("schemas", {})
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                parameter["schema"] = _without_null(parameter.get("schema", {}))
            ref = (operation.get("requestBody", {}).get("content", {}).get("multipart/form-data", {})
                   .get("schema", {}).get("$ref", ""))
            body = components.get(ref.rsplit("/", 1)[-1], {})
            for name, field in body.get("properties", {}).items():
                body["properties"][name] = _without_null(field)
    return schema


def _invalid(field: str, message: str) -> RequestValidationError:
    """A 422 refusal of one form field, in the shape FastAPI gives its own (and the schema promises)."""
    return RequestValidationError([{"loc": ("body", field), "msg": message, "type": "value_error"}])


class SecurityHeadersMiddleware:
    """Adds the page's content security policy and no-sniff to every response (pure ASGI: no buffering)."""

    HEADERS = ((b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
               (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"))

    def __init__(self, app):  # type: ignore[no-untyped-def]
        self.app = app

    async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
        async def send_with_headers(message):  # type: ignore[no-untyped-def]
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.HEADERS]}
            await send(message)

        await self.app(scope, receive, send_with_headers if scope["type"] == "http" else send)


class SearchService:
    """The state behind the routes: the warm engine, the media it may serve, cached classifiers and
    thumbnails. The encoder and the FAISS stores are shared, so calls into them take one lock."""

    def __init__(self, engine: Engine, config: ServiceConfig):
        self.engine = engine
        self.config = config
        self.media = CorpusMedia(engine.index.catalog)
        self.thumbnails = ThumbnailCache(config.thumbnail_cache_entries)
        self.lock = threading.Lock()
        self._classifiers: OrderedDict[tuple, ZeroShotClassifier] = OrderedDict()
        self._duplicates: tuple[tuple, list[DuplicateGroupOut]] | None = None
        if config.default_label_set not in builtin_label_sets():
            raise PromptError(f"unknown default label set {config.default_label_set!r}: use one of "
                              f"{', '.join(builtin_label_sets())}")

    # -- search -----------------------------------------------------------------------------------
    def hits_json(self, hits: list[Hit]) -> list[HitOut]:
        # JSON carries Unicode: a file name's bytes that are not UTF-8 go as backslash escapes (the id fetches it).
        return [HitOut(rank=h.rank, path=printable(h.path), root=printable(h.root), name=printable(Path(h.path).name),
                       start=h.start, end=h.end, score=h.score,
                       segment_id=h.segment_id, file_id=h.file_id, audio_url=f"/api/files/{h.file_id}/audio",
                       waveform_url=f"/api/segments/{h.segment_id}/waveform.png",
                       windows=[WindowOut(start=w.start, end=w.end, score=w.score, segment_id=w.segment_id)
                                for w in h.windows], tags=h.tags, matched_words=list(h.matched),
                       keyword_score=h.keyword_score, fused_score=h.fused_score) for h in hits]

    def modality(self, modality: str | None) -> str:
        return modality or self.engine.modalities[-1]

    def query(self, text: str, k: int, modality: str | None, where: SearchFilter | None = None,
              per_file: bool = True, mode: str = "hybrid") -> tuple[list[Hit], list[str]]:
        """Hits, and notes on the answer (Engine.answer_notes)."""
        with self.lock:
            hits = self.engine.query(text, k, modality, where, per_file=per_file, mode=mode)
            return hits, list(self.engine.answer_notes)

    @property
    def clip_limits(self) -> DecodeLimits:
        """Decoding of an uploaded clip stops here (413), whatever its header claimed."""
        return DecodeLimits.for_seconds(self.config.max_upload_seconds)

    def similar(self, path: Path, k: int, modality: str | None, where: SearchFilter | None = None,
                per_file: bool = True, exclude_self: bool = False) -> tuple[list[Hit], list[str]]:
        with self.lock:
            hits = self.engine.similar(path, k, modality, where, limits=self.clip_limits, per_file=per_file,
                                       exclude_self=exclude_self)
            return hits, list(self.engine.answer_notes)

    def similar_to_segment(self, segment_id: int, k: int, where: SearchFilter | None = None,
                           per_file: bool = True) -> tuple[list[Hit], list[str]]:
        """Hits for a stored segment's own vector ("more like this"): nothing to decode or embed."""
        self.media.segment(segment_id)
        with self.lock:
            store = self.engine.stores()["segments"]
            try:
                vector = store.reconstruct([segment_id])[0]
            except RuntimeError as e:  # in the catalog but not (yet) in the loaded generation
                raise NotFoundError(f"segment {segment_id} has no vector in the current index") from e
            self.engine.answer_notes = []
            return self.engine.search_vector(vector, k, where, per_file), list(self.engine.answer_notes)

    def duplicates(self, threshold: float | None, min_match: float | None,
                   check: bool) -> tuple[int, list[DuplicateGroupOut]]:
        """Duplicate groups of the current generation, computed once per (generation, settings)."""
        with self.lock:
            generation = self.engine.index.generation()
            key = (generation, threshold, min_match, check)
            if self._duplicates is None or self._duplicates[0] != key:
                groups = [DuplicateGroupOut(members=[
                    DuplicateMemberOut(file_id=m.file_id, path=printable(m.path), name=printable(Path(m.path).name),
                                       duration=m.duration,
                                       similarity=m.similarity, match=m.match, offset=m.offset,
                                       audio_url=f"/api/files/{m.file_id}/audio") for m in g.members])
                    for g in self.engine.duplicates(threshold, min_match, check)]
                self._duplicates = (key, groups)
            return generation, self._duplicates[1]

    # -- classification ---------------------------------------------------------------------------
    def label_set(self, name: str | None, labels: str | None) -> LabelSet:
        """A built-in label set by name, or the request's own labels (one per line); never a file path."""
        # The command line's own checks (search/validation.py): one of the two, no duplicates, not empty.
        one_of({"labels": labels, "label_set": name})
        if labels is not None:
            names = label_list(labels.splitlines(), "labels")
            try:
                label_limits(names, self.config.max_labels, self.config.max_label_chars)
            except LabelLimitError as e:
                raise _invalid("labels", str(e)) from e
            return LabelSet("custom", names)
        name = name or self.config.default_label_set
        if name not in builtin_label_sets():
            raise PromptError(f"unknown label set {name[:60]!r}: use one of {', '.join(builtin_label_sets())}, "
                              f"or give your own labels")
        return load_label_set(name)

    def classifier(self, label_set: LabelSet, strategy: str, modality: str) -> ZeroShotClassifier:
        """A classifier per (labels, prompts, modality); label embeddings are computed once, then kept."""
        key = (label_set.name, label_set.labels, strategy, modality)
        with self.lock:
            classifier = self._classifiers.get(key)
            if classifier is None:
                classifier = ZeroShotClassifier(self.engine.encoder, label_set, strategy, modality=modality)
                self._classifiers[key] = classifier
                while len(self._classifiers) > self.config.classifier_cache_entries:
                    self._classifiers.popitem(last=False)
            self._classifiers.move_to_end(key)
            return classifier

    def classify(self, path: Path, label_set: LabelSet, strategy: str | None, modality: str, k: int) -> tuple[str, FileLabels]:
        if modality != "av" and modality not in self.engine.modalities:  # "av" means "all the index has"
            raise QueryError(f"modality {modality!r} needs an audio-visual index; this one answers "
                             f"{', '.join(self.engine.modalities)}")
        has_bank = label_set.name != "custom" and default_bank_for(label_set) is not None
        if strategy is None:  # ReCLAP where a bank ships for the labels, else the template ensemble
            strategy = "reclap" if has_bank else "templates"
        elif strategy == "reclap" and not has_bank:
            raise ServiceError("reclap prompts come from a prompt bank, and only the built-in label sets have "
                               "one: use prompts=templates (or clap, label) with your own labels")
        classifier = self.classifier(label_set, strategy, modality)
        with self.lock:
            return strategy, classifier.classify_file(path, min(k, len(label_set.labels)), limits=self.clip_limits)

    # -- media ------------------------------------------------------------------------------------
    def waveform(self, segment_id: int, width: int, height: int) -> bytes:
        key = (segment_id, width, height)
        png = self.thumbnails.get(key)
        if png is None:
            segment = self.media.segment(segment_id)
            media = self.media.file(segment.file_id)  # only files inside their corpus are read
            png = waveform_png(read_span(media.path, segment.start, segment.end), width, height)
            self.thumbnails.put(key, png)
        return png


def create_app(index: Engine | str | Path, config: ServiceConfig = DEFAULT_CONFIG, *, db_url: str | None = None,
               device: str = "cpu", model: str | None = None) -> FastAPI:
    """The FastAPI app serving `index` (an open Engine, or an index directory to open now, kept warm).

    An Engine passed in stays the caller's to close; one opened here is closed when the app shuts down.
    """
    owned = not isinstance(index, Engine)
    engine = Engine(index, model=model, device=device, db_url=db_url) if owned else index
    service = SearchService(engine, config)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if owned:
            engine.close()

    app = FastAPI(
        title="resound",
        summary="Semantic search over indexed sound and video: by text, by example clip, zero-shot labels.",
        version="1",
        # Swagger UI and ReDoc load from a CDN; the schema itself is served, for any offline viewer.
        openapi_url="/api/openapi.json", docs_url=None, redoc_url=None,
        lifespan=lifespan,
    )
    app.state.service = service
    base_openapi = app.openapi
    app.openapi = lambda: _optional_fields_without_null(base_openapi())  # type: ignore[method-assign]
    # Added innermost first: Host check, then the body cap, then headers on whatever answers.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=config.max_upload_bytes + MULTIPART_OVERHEAD_BYTES)
    if config.allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(config.allowed_hosts))
    app.add_middleware(SecurityHeadersMiddleware)

    @app.exception_handler(ResoundError)
    async def domain_error(_: Request, error: ResoundError) -> JSONResponse:
        headers = {"content-range": f"bytes */{error.size}"} if isinstance(error, RangeNotSatisfiableError) else None
        return JSONResponse({"detail": str(error)}, status_code=status_for(error), headers=headers)

    # The modalities this index answers (audio; visual and av for audio-visual ones): the schema says which.
    Modality = Literal[engine.modalities]  # type: ignore[valid-type]
    ClassifyModality = Literal[tuple(dict.fromkeys((*engine.modalities, "av")))]  # type: ignore[valid-type]
    K = Annotated[int, Query(ge=1, le=config.max_k, description="number of results (files, or windows with per_window)")]
    FormK = Annotated[int, Form(ge=1, le=config.max_k, description="number of results (files, or windows with per_window)")]
    PerWindow = Annotated[bool, Query(description=PER_WINDOW)]
    CatalogId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="an id the catalog gave (in a hit)")]

    # -- the page ---------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers={"cache-control": "no-cache"})

    @app.get("/duplicates", include_in_schema=False)
    def duplicates_page() -> FileResponse:
        return FileResponse(STATIC_DIR / "duplicates.html", media_type="text/html",
                            headers={"cache-control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    # -- API --------------------------------------------------------------------------------------
    @app.get("/api/health", tags=["service"])
    def health() -> dict[str, str]:
        """Liveness: answers once the engine is loaded."""
        return {"status": "ok"}

    @app.get("/api/info", tags=["service"], response_model=InfoResponse)
    def info() -> InfoResponse:
        """The index (generation, counts), its model, what it can be asked, and the request limits."""
        index = engine.index
        provenance = index.provenance() or engine.provenance
        return InfoResponse(
            index=str(index.path), generation=index.generation(), counts=index.catalog.counts(),
            model=ModelOut(id=provenance.model_id, family=provenance.family, dim=provenance.dim,
                           sample_rate=provenance.sample_rate, window_seconds=provenance.window_seconds,
                           hop_seconds=provenance.hop_seconds),
            faiss_factory=provenance.faiss_factory, search_params=dict(provenance.search_params),
            modalities=list(engine.modalities), label_sets=builtin_label_sets(),
            default_label_set=config.default_label_set, prompt_strategies=list(STRATEGIES),
            limits=LimitsOut(max_upload_bytes=config.max_upload_bytes, max_upload_seconds=config.max_upload_seconds,
                             max_k=config.max_k, max_labels=config.max_labels),
        )

    @app.get("/api/query", tags=["search"], response_model=SearchResponse, responses=_ERRORS)
    def query(q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS, pattern=r"\S",
                                      description="what to find, in words")],
              where: Annotated[SearchFilter, Depends(query_filter)], k: K = 10,
              modality: Modality | None = None, per_window: PerWindow = False,
              mode: Annotated[Literal["hybrid", "vector", "keyword"], Query(description=MODE)] = "hybrid",
              ) -> SearchResponse:
        """Files that best match a text description (the best segment of each), best first, among the
        segments the filters admit: by their words and their sound (hybrid), by sound or by words alone."""
        started = time.perf_counter()
        hits, notes = service.query(q, k, modality, where, per_file=not per_window, mode=mode)
        return SearchResponse(kind="query", query=q, modality=service.modality(modality),
                              took_ms=1000 * (time.perf_counter() - started), hits=service.hits_json(hits), notes=notes)

    @app.post("/api/similar", tags=["search"], response_model=SearchResponse, responses=_ERRORS)
    def similar(file: Annotated[UploadFile, File(description="an audio or video clip (not empty)", json_schema_extra={"minLength": 1})],
                where: Annotated[SearchFilter, Depends(form_filter)], k: FormK = 10,
                modality: Annotated[Modality | None, Form()] = None,
                per_window: Annotated[bool, Form(description=PER_WINDOW)] = False,
                exclude_self: Annotated[bool, Form(description=EXCLUDE_SELF)] = False) -> SearchResponse:
        """Files that sound (and look) most like an uploaded clip (file vector against file vectors), best
        first, among the segments the filters admit; an indexed file with the clip's bytes comes first."""
        started = time.perf_counter()
        with stored_upload(file.file, file.filename, config.max_upload_bytes) as path:
            check_clip(path, config.max_upload_seconds)
            hits, notes = service.similar(path, k, modality, where, per_file=not per_window, exclude_self=exclude_self)
        # A note names the clip as the client knows it, not by the server's temporary copy.
        notes = [note.replace(str(path), Path(file.filename or "the uploaded clip").name) for note in notes]
        return SearchResponse(kind="similar", modality=service.modality(modality),
                              took_ms=1000 * (time.perf_counter() - started), hits=service.hits_json(hits), notes=notes)

    @app.get("/api/segments/{segment_id}/similar", tags=["search"], response_model=SearchResponse, responses=_ERRORS)
    def similar_segment(segment_id: CatalogId, where: Annotated[SearchFilter, Depends(query_filter)],
                        k: K = 10, per_window: PerWindow = False) -> SearchResponse:
        """Files most like an indexed segment (by its stored vector), best first, among the segments the
        filters admit."""
        started = time.perf_counter()
        hits, notes = service.similar_to_segment(segment_id, k, where, per_file=not per_window)
        return SearchResponse(kind="segment", modality=service.modality(None),
                              took_ms=1000 * (time.perf_counter() - started), hits=service.hits_json(hits), notes=notes)

    @app.get("/api/duplicates", tags=["search"], response_model=DuplicatesResponse, responses=_ERRORS)
    def duplicates(
        threshold: Annotated[float | None, Query(ge=-1, le=1, description=(
            "aligned window similarity a candidate pair needs (default: chosen by bench/duplicates.py)"))] = None,
        min_match: Annotated[float | None, Query(ge=-1, le=1, description=(
            "spectral match that confirms a candidate (default: chosen by bench/duplicates.py)"))] = None,
        check: Annotated[bool, Query(description="confirm candidates by their audio (false: vectors alone)")] = True,
    ) -> DuplicatesResponse:
        """Groups of indexed files that are the same recording (re-encoded, resampled, trimmed, gain)."""
        from search.duplicates import DEFAULT_MIN_MATCH, DEFAULT_THRESHOLD

        started = time.perf_counter()
        generation, groups = service.duplicates(threshold, min_match, check)
        return DuplicatesResponse(threshold=DEFAULT_THRESHOLD if threshold is None else threshold,
                                  min_match=(DEFAULT_MIN_MATCH if min_match is None else min_match) if check else None,
                                  generation=generation, took_ms=1000 * (time.perf_counter() - started), groups=groups)

    @app.post("/api/classify", tags=["classify"], response_model=ClassifyResponse, responses=_ERRORS)
    def classify(
        file: Annotated[UploadFile, File(description="an audio or video clip (not empty)", json_schema_extra={"minLength": 1})],
        label_set: Annotated[str | None, Form(description="a built-in label set (see /api/info)")] = None,
        labels: Annotated[str | None, Form(description="your own labels, one per line (instead of label_set)")] = None,
        prompts: Annotated[Strategy | None, Form(description="prompt strategy (default: reclap for built-in "
                                                             "sets with a bank, else templates)")] = None,
        k: Annotated[int, Form(ge=1, le=config.max_k)] = 5,
        modality: Annotated[ClassifyModality, Form(description="av: everything the index has")] = "av",
    ) -> ClassifyResponse:
        """Zero-shot labels of an uploaded clip with their probabilities, and per window for long clips."""
        started = time.perf_counter()
        chosen = service.label_set(label_set, labels)
        with stored_upload(file.file, file.filename, config.max_upload_bytes) as path:
            check_clip(path, config.max_upload_seconds)
            strategy, result = service.classify(path, chosen, prompts, modality, k)

        def scores(top: list[LabelScore]) -> list[LabelOut]:
            return [LabelOut(label=s.label, probability=s.probability, similarity=s.similarity) for s in top]

        return ClassifyResponse(
            label_set=chosen.name, prompts=strategy, n_labels=len(chosen.labels), labels=scores(result.top),
            timeline=[WindowLabelsOut(start=w.start, end=w.end, labels=scores(w.top)) for w in result.timeline],
            took_ms=1000 * (time.perf_counter() - started),
        )

    @app.get("/api/segments/{segment_id}/waveform.png", tags=["media"], responses=_MEDIA_ERRORS,
             response_class=Response)
    def waveform(segment_id: CatalogId, width: Annotated[int, Query(ge=32, le=2000)] = 480,
                 height: Annotated[int, Query(ge=16, le=400)] = 64,
                 if_none_match: Annotated[str | None, Header()] = None) -> Response:
        """The segment's waveform as a PNG (peak and RMS envelopes), rendered once and cached."""
        etag = f'"wave-{segment_id}-{width}x{height}"'
        headers = {"etag": etag, "cache-control": "private, max-age=86400"}
        if if_none_match == etag:
            service.media.segment(segment_id)  # a deleted segment must not stay "not modified"
            return Response(status_code=304, headers=headers)
        return Response(service.waveform(segment_id, width, height), media_type="image/png", headers=headers)

    @app.head("/api/files/{file_id}/audio", include_in_schema=False)
    @app.get("/api/files/{file_id}/audio", tags=["media"], response_class=StreamingResponse, responses={
        **_MEDIA_ERRORS, 416: {"model": ErrorOut, "description": "the range starts past the end of the file"}})
    def audio(request: Request, file_id: CatalogId,
              range_header: Annotated[str | None, Header(alias="range")] = None) -> Response:
        """An indexed file's bytes, by catalog id only and only from inside its corpus; honours `Range`."""
        media = service.media.file(file_id)
        headers = {"accept-ranges": "bytes", "etag": media.etag, "cache-control": "no-cache"}
        span = byte_range(range_header, media.size)
        first, last = span if span is not None else (0, media.size - 1)
        length = last - first + 1
        headers["content-length"] = str(length)
        status = 200
        if span is not None:
            status = 206
            headers["content-range"] = f"bytes {first}-{last}/{media.size}"
        body = read_bytes(media.path, first, length) if request.method == "GET" else iter(())
        return StreamingResponse(body, status_code=status, media_type=media.content_type, headers=headers)

    return app
