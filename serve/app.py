"""The `Embedder` Serve deployment and its HTTP API.

One deployment serves both callers: the consumer actors call `embed` through a
DeploymentHandle, and HTTP requests reach the same replicas through Serve's
proxy. Keeping the routes on the model's own replicas saves a hop and a process
per request, which matters on small machines.

Routes: POST /embed, POST /v1/embeddings (OpenAI-compatible), POST /search,
GET /healthz, GET /readyz; OpenAPI at /openapi.json and /docs.
"""

# No `from __future__ import annotations`: FastAPI must resolve the route annotations at import.
import base64
import json
from typing import Any, Literal

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPBearer
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from ray import serve

from freshvec.core.records import unicode_problem
from freshvec.core.config import FreshvecConfig
from freshvec.core.identity import DEPLOYMENT_NAME
from freshvec.serve.autoscaling import serve_autoscaling
from freshvec.serve.embedder import EmbeddingModel


class AsciiJSONResponse(JSONResponse):
    """JSON with non-ASCII escaped: an error that echoes a client's lone surrogate (valid JSON, not
    valid Unicode) must still be a 4xx, where Starlette's UTF-8 rendering would fail with a 500."""

    def render(self, content) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


api = FastAPI(
    title="freshvec",
    description="On-demand embeddings (also OpenAI-compatible) and search over the live index.",
    version="0.1.0",
    default_response_class=AsciiJSONResponse,
)


class EmbedRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    texts: list[str] = Field(min_length=1, description="texts to embed, at most http.max_texts")


class EmbedResponse(BaseModel):
    model: str
    dim: int
    embeddings: list[list[float]]


class OpenAIEmbeddingsRequest(BaseModel):
    """The OpenAI embeddings request; options we cannot honour are refused by name."""

    model_config = ConfigDict(extra="allow")
    input: str | list[str] = Field(description="a text or a list of texts (token arrays are not supported)")
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = None
    dimensions: int | None = Field(None, description="not supported: the model's dimension is fixed")


class OpenAIEmbedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class OpenAIUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class OpenAIEmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIEmbedding]
    model: str
    usage: OpenAIUsage


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1)
    k: int = Field(10, ge=1, description="documents (or chunks, with group 'chunks') to return")
    filters: dict[str, str | int | float | bool] | None = Field(
        None, description="metadata key -> value; all must match")
    mode: Literal["vector", "hybrid"] = Field(
        "vector", description="vector: nearest chunks; hybrid: Weaviate's BM25 and vector scores fused, "
                              "which also finds exact terms (names, codes) that vectors miss")
    alpha: float | None = Field(None, ge=0, le=1, description="hybrid only: 1 is pure vector, 0 pure BM25 "
                                                              "(default 0.5)")
    group: Literal["documents", "chunks"] = Field(
        "documents", description="documents: the k best distinct documents, each with its best chunk; "
                                 "chunks: the k best chunks, several may be of one document")


class SearchHit(BaseModel):
    id: str = Field(description="the document's key")
    text: str = Field(description="the chunk's text")
    metadata: dict[str, Any]
    chunk_index: int
    chunk_count: int
    char_start: int = Field(description="where the chunk starts in the document (characters)")
    char_end: int
    distance: float | None = Field(None, description="vector mode: cosine distance, lower is nearer")
    score: float | None = Field(None, description="hybrid mode: fused score, higher is better")


class SearchResponse(BaseModel):
    model: str
    results: list[SearchHit]


# Chunks looked at per wanted document when grouping: a long document can fill many of the top places
# with its chunks; with fewer than k documents among the k * 20 best chunks, fewer than k come back.
GROUP_LOOK_AT = 20


def _hit(o) -> SearchHit:
    p = o.properties
    text = p.get("text") or ""
    return SearchHit(id=p["doc_id"], text=text, metadata=json.loads(p.get("metadata") or "{}"),
                     # an object written before chunking is its document's only chunk
                     chunk_index=p.get("chunk_index") or 0, chunk_count=p.get("chunk_count") or 1,
                     char_start=p.get("char_start") or 0,
                     char_end=p.get("char_end") if p.get("char_end") is not None else len(text),
                     distance=o.metadata.distance, score=o.metadata.score)


class ProblemError(Exception):
    """A client mistake: the status code and a message saying what is wrong."""

    def __init__(self, status: int, message: str, param: str | None = None):
        self.status, self.message, self.param = status, message, param


@api.exception_handler(ProblemError)
async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
    if request.url.path.startswith("/v1/"):  # OpenAI's error shape, which its clients parse
        body = {"error": {"message": exc.message, "type": "invalid_request_error", "param": exc.param,
                          "code": None}}
    else:
        body = {"detail": exc.message}
    return AsciiJSONResponse(body, status_code=exc.status)


@api.exception_handler(RequestValidationError)
async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422, rendered so that it survives any input it echoes."""
    return AsciiJSONResponse({"detail": jsonable_encoder(exc.errors())}, status_code=422)


# Declares the bearer scheme in the OpenAPI document; the key itself is checked by `_authorize`.
AUTH = [Depends(HTTPBearer(auto_error=False, description="http.api_key, when the config sets one"))]


@serve.deployment(name=DEPLOYMENT_NAME)
@serve.ingress(api)
class Embedder(EmbeddingModel):
    def __init__(self, cfg: FreshvecConfig):
        super().__init__(cfg.embedding)
        self.cfg = cfg
        self.http = cfg.http
        self._api_key = cfg.http.api_key.get_secret_value() if cfg.http.api_key else None
        self._weaviate = None
        self._collection_models: dict[str, str | None] = {}  # a physical collection's recorded model

    # --- checks shared by the routes ------------------------------------------------
    def _authorize(self, request: Request) -> None:
        """Every route but /healthz needs the bearer key when http.api_key is set."""
        if self._api_key is not None and request.headers.get("authorization") != f"Bearer {self._api_key}":
            raise HTTPException(401, "missing or wrong API key: send 'Authorization: Bearer <key>'",
                                headers={"WWW-Authenticate": "Bearer"})

    def _checked(self, texts: list[str], field: str) -> list[str]:
        if not texts:
            raise ProblemError(400, f"{field} is empty: give at least one text", field)
        if len(texts) > self.http.max_texts:
            raise ProblemError(413, f"{field} has {len(texts)} texts; the limit is {self.http.max_texts}", field)
        out = []
        for i, text in enumerate(texts):
            if not text.strip():
                raise ProblemError(400, f"{field}[{i}] is empty or only whitespace", field)
            if problem := unicode_problem(text):
                raise ProblemError(400, f"{field}[{i}] {problem}", field)
            raw = text.encode("utf-8")
            if len(raw) > self.http.max_text_bytes:
                if self.http.oversize == "reject":
                    raise ProblemError(413, f"{field}[{i}] is {len(raw)} bytes; the limit is "
                                            f"{self.http.max_text_bytes}", field)
                text = raw[: self.http.max_text_bytes].decode("utf-8", errors="ignore")
            out.append(text)
        return out

    # --- routes ---------------------------------------------------------------------
    @api.post("/embed", response_model=EmbedResponse, dependencies=AUTH)
    async def embed_route(self, body: EmbedRequest, request: Request) -> EmbedResponse:
        """Embed texts: normalized float32 vectors, truncated at the model's max sequence length."""
        self._authorize(request)
        vectors = await self.embed(self._checked(body.texts, "texts"))
        return EmbedResponse(model=self.model_name, dim=self.dim, embeddings=vectors.tolist())

    @api.post("/v1/embeddings", response_model=OpenAIEmbeddingsResponse, dependencies=AUTH)
    async def openai_embeddings(self, body: OpenAIEmbeddingsRequest, request: Request) -> OpenAIEmbeddingsResponse:
        """OpenAI-compatible embeddings: point an OpenAI client's base_url at this server."""
        self._authorize(request)
        if body.dimensions is not None:
            raise ProblemError(400, f"dimensions is not supported: {self.model_name} always returns {self.dim}",
                               "dimensions")
        unknown = sorted(body.model_extra or {})
        if unknown:
            raise ProblemError(400, f"unsupported option(s): {', '.join(unknown)}", unknown[0])
        texts = self._checked([body.input] if isinstance(body.input, str) else body.input, "input")
        vectors = await self.embed(texts)
        tokens = self.count_tokens(texts)
        if body.encoding_format == "base64":
            data = [base64.b64encode(v.astype("<f4").tobytes()).decode() for v in vectors]
        else:
            data = vectors.tolist()
        return OpenAIEmbeddingsResponse(
            data=[OpenAIEmbedding(index=i, embedding=e) for i, e in enumerate(data)],
            model=self.model_name, usage=OpenAIUsage(prompt_tokens=tokens, total_tokens=tokens))

    @api.post("/search", response_model=SearchResponse, dependencies=AUTH)
    async def search(self, body: SearchRequest, request: Request) -> SearchResponse:
        """The k documents nearest to the query (each with its best chunk), or the k nearest chunks;
        by vector or hybrid (BM25 + vector); optionally filtered on metadata equality."""
        import asyncio

        self._authorize(request)
        if body.k > self.http.max_k:
            raise ProblemError(413, f"k is {body.k}; the limit is {self.http.max_k}", "k")
        for key, value in (body.filters or {}).items():
            if problem := unicode_problem(key) or (unicode_problem(value) if isinstance(value, str) else None):
                raise ProblemError(400, f"filters key {key!r} {problem}", "filters")
        if body.alpha is not None and body.mode != "hybrid":
            raise ProblemError(400, "alpha applies to mode 'hybrid' only", "alpha")
        (query,) = self._checked([body.query], "query")
        try:
            physical, model, app = await asyncio.to_thread(self._readable)
            if physical is None:
                return SearchResponse(model=self.model_name, results=[])  # nothing ingested yet
            vector = await self._query_vector(query, model, app)
            hits = await asyncio.to_thread(self._search, physical, query, vector, body)
        except ProblemError:
            raise
        except Exception as exc:
            raise HTTPException(503, f"Weaviate is unavailable: {type(exc).__name__}: {exc}") from exc
        return SearchResponse(model=model or self.model_name, results=hits)

    @api.get("/healthz")
    async def healthz(self) -> dict:
        """Alive: the replica answers."""
        return {"status": "ok"}

    @api.get("/readyz", dependencies=AUTH)
    async def readyz(self, request: Request) -> JSONResponse:
        """Ready: the model is loaded and Weaviate answers."""
        import asyncio

        self._authorize(request)
        try:
            weaviate_ok = await asyncio.to_thread(lambda: self._client().is_ready())
        except Exception:
            weaviate_ok = False
        body = {"model": self.model_name, "dim": self.dim, "device": self.device, "weaviate": weaviate_ok}
        return AsciiJSONResponse(body, status_code=200 if weaviate_ok else 503)

    # --- Weaviate -------------------------------------------------------------------
    def _client(self):
        from freshvec.core.store import connect

        if self._weaviate is None or not self._weaviate.is_connected():
            self._weaviate = connect(self.cfg.weaviate)
        return self._weaviate

    def _search(self, physical: str, query: str, vector: np.ndarray, body: SearchRequest) -> list[SearchHit]:
        from weaviate.classes.query import Filter, MetadataQuery

        from freshvec.core.store import metadata_terms

        client = self._client()
        collection = client.collections.use(physical)
        # Documents: the best chunks in rank order, the first of each document kept. (Weaviate's own
        # group_by returns no hybrid score, and it too only groups the chunks its limit lets it see.)
        options = dict(
            limit=body.k * GROUP_LOOK_AT if body.group == "documents" else body.k,
            filters=Filter.by_property("metadata_terms").contains_all(metadata_terms(body.filters))
            if body.filters else None,
            return_properties=["doc_id", "text", "metadata", "chunk_index", "chunk_count", "char_start", "char_end"],
        )
        if body.mode == "hybrid":
            result = collection.query.hybrid(query, vector=vector.tolist(), alpha=0.5 if body.alpha is None else body.alpha,
                                             return_metadata=MetadataQuery(score=True), **options)
        else:
            result = collection.query.near_vector(vector.tolist(), return_metadata=MetadataQuery(distance=True),
                                                  **options)
        objects = result.objects
        if body.group == "documents":
            firsts: dict[str, object] = {}
            for o in objects:
                firsts.setdefault(o.properties["doc_id"], o)
            objects = list(firsts.values())[:body.k]
        return [_hit(o) for o in objects]

    def _readable(self) -> tuple[str | None, str | None, str | None]:
        """(the physical collection behind the alias now, the model of its vectors, the Serve application
        that embeds with that model: None for this one); None for all when there is no collection yet.

        The alias is resolved once per query and the collection then queried by its own name, so a query
        is never run against vectors of a model other than the one that embedded it: while a reindex
        switches, the alias moves to the re-embedded collection before this deployment is replaced, and
        its queries are embedded meanwhile by the reindex's deployment (the published generation's)."""
        from freshvec.core import collections, generation

        client = self._client()
        alias = self.cfg.weaviate.collection
        physical = collections.target(client, alias) or alias
        if not client.collections.exists(physical):
            return None, None, None
        if physical not in self._collection_models:  # a collection's model never changes
            self._collection_models[physical] = collections.stored(client, physical).model
        model = self._collection_models[physical]
        if model is None or model == self.model_name:
            return physical, model, None
        current = generation.current(alias)
        if current is None or current.model.model != model:
            raise ProblemError(503, f"the index {alias} ({physical}) holds vectors of model {model!r}; this "
                                    f"deployment embeds queries with {self.model_name!r} and no deployment of "
                                    f"{model!r} is published, so results would be meaningless; deploy the "
                                    "index's model (or finish the reindex: freshvec reindex --resume)")
        return physical, model, current.app

    async def _query_vector(self, query: str, model: str | None, app: str | None) -> np.ndarray:
        if app is None:
            (vector,) = await self.embed([query])
            return vector
        other = serve.get_deployment_handle(DEPLOYMENT_NAME, app_name=app)
        vectors = await other.embed.remote([query])
        return np.asarray(vectors)[0]


def build_app(cfg: FreshvecConfig, replicas: int | None = None, num_cpus: float | None = None):
    """The bound application, with resources and autoscaling from the config (`auto` ones sized for
    this machine, serve/sizing.py). A reindex (cluster/reindex.py) overrides them: `replicas`, a fixed
    count; `num_cpus`, Ray CPUs per replica."""
    from freshvec.serve.sizing import sized

    cfg, _ = sized(cfg)
    emb, auto = cfg.embedding, cfg.embedding.autoscaling
    scaling = {"num_replicas": replicas} if replicas else {"autoscaling_config": serve_autoscaling(auto)}
    return Embedder.options(
        ray_actor_options={"num_cpus": emb.num_cpus if num_cpus is None else num_cpus, "num_gpus": emb.num_gpus,
                           **({"label_selector": emb.label_selector} if emb.label_selector else {})},
        # Serve caps a batch at max_ongoing_requests: keep room for a full batch plus the next.
        max_ongoing_requests=2 * emb.max_batch_size,
        **scaling,
        logging_config={"enable_access_log": False},  # a log line per request costs CPU on the hot path
    ).bind(cfg)


def app_builder(args: dict):
    """Entry point for `serve run` / `serve deploy` (import_path `freshvec.serve.app:app_builder`).

    args: {"config": <freshvec YAML>} (default deploy/local/freshvec.yaml).
    """
    from freshvec.core.config import load_config

    return build_app(load_config(args.get("config", "deploy/local/freshvec.yaml")))
