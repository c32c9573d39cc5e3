"""The JSON bodies of the service's answers (they make the OpenAPI schema say what each route returns)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class WindowOut(BaseModel):
    """A matching window of a hit's file."""

    start: float = Field(description="window start in seconds")
    end: float = Field(description="window end in seconds")
    score: float = Field(description="cosine similarity")
    segment_id: int


class HitOut(BaseModel):
    """One result: a file's best-matching segment (or one segment, with per_window), best first."""

    rank: int = Field(description="1-based rank, best first")
    path: str = Field(description="absolute path of the file on the server")
    root: str = Field(default="", description="the corpus root the file was indexed under")
    name: str = Field(description="file name, for display")
    start: float = Field(description="segment start in seconds")
    end: float = Field(description="segment end in seconds")
    score: float = Field(description="cosine similarity")
    segment_id: int
    file_id: int
    audio_url: str = Field(description="the file's audio (HTTP Range supported); add #t=start to play the segment")
    waveform_url: str = Field(description="PNG waveform of the segment")
    windows: list[WindowOut] = Field(description="the file's matching windows among those searched, best first "
                                                 "(the first is this hit's own)")
    tags: dict[str, str] = Field(default_factory=dict, description="the file's tags: title, artist, album, genre, "
                                 "description, comment, originator, notes (those it carries)")
    matched_words: list[str] = Field(default_factory=list, description="query words (as resound's tokenizer "
                                     "makes them) that the file's name, folders or tags hold (keyword, hybrid)")
    keyword_score: float | None = Field(None, description="BM25 score of those words (keyword, hybrid)")
    fused_score: float | None = Field(None, description="reciprocal rank fusion score (hybrid)")


class SearchResponse(BaseModel):
    """Hits of a text query, an uploaded clip or a stored segment."""

    kind: str = Field(description="query, similar or segment")
    query: str | None = Field(None, description="the text of a text query")
    modality: str
    took_ms: float
    hits: list[HitOut]
    notes: list[str] = Field(default_factory=list, description="what to know about the answer: why it is empty "
                             "(which filter admitted no file), or that the query file itself was left out")


class LabelOut(BaseModel):
    label: str
    probability: float = Field(description="softmax over the label set of cosine x the model's logit scale")
    similarity: float = Field(description="cosine similarity with the label's prompt embedding")


class WindowLabelsOut(BaseModel):
    start: float
    end: float
    labels: list[LabelOut]


class ClassifyResponse(BaseModel):
    """Zero-shot labels of an uploaded clip, and of each of its windows when it spans several."""

    label_set: str
    prompts: str = Field(description="prompt strategy: label, clap, templates or reclap")
    n_labels: int
    labels: list[LabelOut]
    timeline: list[WindowLabelsOut]
    took_ms: float


class ModelOut(BaseModel):
    id: str
    family: str
    dim: int
    sample_rate: int
    window_seconds: float
    hop_seconds: float


class LimitsOut(BaseModel):
    max_upload_bytes: int
    max_upload_seconds: float
    max_k: int
    max_labels: int


class InfoResponse(BaseModel):
    """What the service answers from: the index, its model and the request limits."""

    index: str
    generation: int
    counts: dict[str, int]
    model: ModelOut
    faiss_factory: str
    search_params: dict[str, float | int | str]
    modalities: list[str]
    label_sets: list[str]
    default_label_set: str
    prompt_strategies: list[str]
    limits: LimitsOut


class ErrorOut(BaseModel):
    """Every refusal: the status code says what kind, `detail` says what exactly."""

    detail: str


class DuplicateMemberOut(BaseModel):
    """A file of a duplicate group, placed against the group's first member."""

    file_id: int
    path: str = Field(description="absolute path of the file on the server")
    name: str
    duration: float = Field(description="seconds")
    similarity: float = Field(description="mean cosine of the windows aligned with the group's first member")
    match: float | None = Field(None, description="correlation of the spectral prints with the first member "
                                                  "(null: not checked)")
    offset: float = Field(description="seconds: where this file's start lies in the first member (trimmed start: > 0)")
    audio_url: str


class DuplicateGroupOut(BaseModel):
    members: list[DuplicateMemberOut] = Field(description="the group's reference first (its likeliest original: full length, lossless, most landmarks), then by similarity")


class DuplicatesResponse(BaseModel):
    """Groups of indexed files that are the same recording."""

    threshold: float = Field(description="window similarity a candidate pair needed")
    min_match: float | None = Field(description="spectral match that confirmed it (null: vectors alone)")
    generation: int
    took_ms: float
    groups: list[DuplicateGroupOut]
