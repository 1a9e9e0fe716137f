"""What `POST /v1/predict` accepts and answers, and how a bad request becomes one clear error.

The body is parsed by pydantic from the raw bytes (strict types, unknown fields refused) so
that each failure maps onto one `kind`; `ApiError` carries the status, kind and message that
the app renders as `{"error": {"kind": "...", "message": "..."}}`. Client mistakes are 4xx and
never reach the model or the batching loop.
"""

from __future__ import annotations

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from slimbert.serve.folder import PAIR, SINGLE
from slimbert.serve.model import Item


class PredictRequest(BaseModel):
    """Give exactly one of `texts` or `pairs`."""

    model_config = ConfigDict(extra="forbid", strict=True)
    texts: list[str] | None = Field(
        default=None,
        description="Texts to classify, one prediction each.",
        examples=[["a gripping, funny film"]],
    )
    pairs: list[tuple[str, str]] | None = Field(
        default=None,
        description="Text pairs, for a model trained on pairs (MRPC, STS-B).",
        examples=[[["The cat sat.", "A cat was sitting."]]],
    )


class ModelRef(BaseModel):
    name: str
    sha256: str


class Prediction(BaseModel):
    label: str | None = Field(description="Most probable class; null for a regression model.")
    scores: dict[str, float] = Field(
        description="Probability of each class (softmax), or {'score': value} for regression."
    )
    value: float | None = Field(
        default=None, description="Regression models only: the predicted value."
    )
    tokens: int = Field(description="Tokens the model saw, after truncation.")
    truncated: bool = Field(
        description="True when the input was longer than the model's max_length and was cut."
    )


class PredictResponse(BaseModel):
    model: ModelRef
    predictions: list[Prediction]
    warnings: list[str] = Field(
        default_factory=list,
        description="Things the server changed about the input, such as truncation.",
    )


class ErrorDetail(BaseModel):
    kind: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class ApiError(Exception):
    """A request the server will not answer as asked: status code, kind, and a message saying why.
    Client mistakes are 4xx; 503 is overload or shutdown; 500 only for a failed model call."""

    def __init__(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.headers = headers


def _where(loc: tuple) -> str:
    """('texts', 2) -> 'texts[2]'; () -> 'the body'."""
    if not loc:
        return "the body"
    text = str(loc[0])
    for part in loc[1:]:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def _validation_problem(exc: ValidationError) -> ApiError:
    """Map pydantic's first error onto one kind of bad input."""
    error = exc.errors(include_url=False)[0]
    kind, loc, msg = error["type"], tuple(error["loc"]), error["msg"]
    where = _where(loc)
    if kind == "json_invalid":
        return ApiError(
            400,
            "invalid_json",
            f"the body is not valid UTF-8 JSON ({msg}); "
            'send a JSON object such as {"texts": ["..."]}',
        )
    if kind in ("model_type", "model_attributes_type", "dict_type") and not loc:
        return ApiError(
            422, "wrong_type", 'the body must be a JSON object such as {"texts": ["..."]}'
        )
    if kind == "extra_forbidden":
        return ApiError(
            422, "unknown_field", f"unknown field {loc[0]!r}; the body takes 'texts' or 'pairs'"
        )
    if loc and loc[0] == "pairs" and len(loc) >= 2 and kind in ("too_long", "too_short", "missing"):
        return ApiError(
            422, "bad_pair", f'{_where(loc[:2])}: a pair is exactly two texts, ["first", "second"]'
        )
    if kind in ("string_type", "list_type", "tuple_type"):
        wanted = {
            "string_type": "a string",
            "list_type": "an array",
            "tuple_type": "an array of two strings",
        }[kind]
        got = type(error.get("input")).__name__.replace("NoneType", "null")
        return ApiError(422, "wrong_type", f"{where}: expected {wanted}, got {got}")
    return ApiError(422, "invalid_request", f"{where}: {msg}")


def parse_predict(
    body: bytes, model_inputs: str, max_items: int, max_text_chars: int
) -> tuple[str, list[Item]]:
    """Validate a /v1/predict body against the model's inputs (single, pair or any) and the
    limits; returns the field used ('texts' or 'pairs') and its items."""
    try:
        request = PredictRequest.model_validate_json(body)
    except ValidationError as exc:
        raise _validation_problem(exc) from None
    if request.texts is None and request.pairs is None:
        raise ApiError(422, "missing_field", 'give "texts": ["..."] or "pairs": [["...", "..."]]')
    if request.texts is not None and request.pairs is not None:
        raise ApiError(422, "conflicting_fields", 'give either "texts" or "pairs", not both')
    field = "texts" if request.texts is not None else "pairs"
    if field == "pairs" and model_inputs == SINGLE:
        raise ApiError(
            422,
            "pairs_not_supported",
            'this model was trained on single texts; send {"texts": ["..."]}',
        )
    if field == "texts" and model_inputs == PAIR:
        raise ApiError(
            422,
            "pairs_required",
            'this model was trained on text pairs; send {"pairs": [["...", "..."]]}',
        )
    values = request.texts if field == "texts" else request.pairs
    check_count(field, len(values), max_items)
    items = []
    for index, value in enumerate(values):
        parts = (value,) if field == "texts" else value
        for part_index, text in enumerate(parts):
            where = f"{field}[{index}]" + ("" if field == "texts" else f"[{part_index}]")
            check_text(where, text, max_text_chars)
        items.append(Item(value) if field == "texts" else Item(value[0], value[1]))
    return field, items


def check_count(field: str, count: int, max_items: int, status: int = 422) -> None:
    """At least one item, and at most max_items, in one request."""
    if count == 0:
        raise ApiError(status, "empty_list", f'"{field}" is empty; give at least one item')
    if count > max_items:
        raise ApiError(
            status,
            "too_many_items",
            f'"{field}" has {count} items; at most {max_items} per request (--max-items)',
        )


def check_text(where: str, text: str, max_text_chars: int, status: int = 422) -> None:
    """A text the model can be asked about: not blank, not past --max-text-chars."""
    if not text.strip():
        raise ApiError(status, "empty_text", f"{where} is empty or only whitespace")
    if len(text) > max_text_chars:
        raise ApiError(
            status,
            "text_too_long",
            f"{where} has {len(text)} characters; at most {max_text_chars} (--max-text-chars)",
        )


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) anything over `limit` bytes before reading all of it."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(
                400, "bad_content_length", f"Content-Length {declared!r} is not a byte count"
            )
        if int(declared) > limit:
            raise ApiError(
                413,
                "body_too_large",
                f"the body is {declared} bytes; at most {limit} (--max-body-bytes)",
            )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(
                413, "body_too_large", f"the body is over {limit} bytes (--max-body-bytes)"
            )
        chunks.append(chunk)
    return b"".join(chunks)
