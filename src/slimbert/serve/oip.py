"""The Open Inference Protocol (KServe v2, as Triton speaks it) over one served model.

    GET  /v2                               server metadata: name, version, extensions
    GET  /v2/health/live                   200 while the process answers
    GET  /v2/health/ready                  200 once the model is warm; 503 before and at shutdown
    GET  /v2/models/{name}[/versions/1]          model metadata (below)
    GET  /v2/models/{name}[/versions/1]/ready    200 once warm
    POST /v2/models/{name}[/versions/1]/infer    inference, through the same batcher as /v1

The model's tensors, N items per request:

    inputs   text        BYTES [N] or [N, 1]   UTF-8 texts
             text_pair   BYTES, as text        second texts; listed (and required) when the
                                               model takes pairs, listed for a folder that
                                               does not say (then optional), refused otherwise
    outputs  label       BYTES [N]             most probable class (classification)
             value       FP32  [N]             the prediction (regression)
             scores      FP32  [N, C]          probabilities, in the order of the metadata's
                                               parameters.labels (regression: [N, 1], the value)
             truncated   BOOL  [N]             the input was cut to the model's max_length

A request body is JSON, or — the binary tensor extension, tritonclient's default — a JSON
header of `Inference-Header-Content-Length` bytes followed by each input's raw bytes in the
order listed (BYTES: 4-byte little-endian length, then the bytes, per element). An output is
answered in binary when the request asks (`outputs[].parameters.binary_data`, or
`parameters.binary_data_output` for all). Errors are `{"error": "message"}` with status 400 for
a bad request and 404 for an unknown model, as the protocol says.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from slimbert.data import REGRESSION
from slimbert.serve.folder import ANY, PAIR, SINGLE
from slimbert.serve.model import Item, ModelIdentity
from slimbert.serve.requests import ApiError, check_count, check_text

HEADER_LENGTH = "inference-header-content-length"
VERSION = "1"
PLATFORM = "onnxruntime_onnx"
EXTENSIONS = ["binary_tensor_data"]
TEXT, TEXT_PAIR = "text", "text_pair"
BAD = 400


class TensorInput(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    data: list | None = None


class TensorRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    parameters: dict[str, Any] = Field(default_factory=dict)


class InferRequest(BaseModel):
    """The protocol's $inference_request; unknown members are allowed (the protocol reserves
    them for extensions) and ignored."""

    model_config = ConfigDict(extra="allow")
    id: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    inputs: list[TensorInput]
    outputs: list[TensorRequest] | None = None


@dataclass(frozen=True)
class Infer:
    """A parsed infer request: its id, the items, and the outputs wanted (name -> binary?)."""

    id: str | None
    items: list[Item]
    outputs: dict[str, bool]


def _tensor(name: str, datatype: str, shape: list[int]) -> dict:
    return {"name": name, "datatype": datatype, "shape": shape}


def output_names(identity: ModelIdentity) -> list[str]:
    first = "value" if identity.task == REGRESSION else "label"
    return [first, "scores", "truncated"]


def server_metadata(version: str) -> dict:
    return {"name": "slimbert", "version": version, "extensions": EXTENSIONS}


def model_metadata(identity: ModelIdentity) -> dict:
    """$metadata_model_response, plus `parameters` naming the score columns (labels, as a JSON
    string since parameter values are scalars) and the model's identity."""
    inputs = [_tensor(TEXT, "BYTES", [-1])]
    if identity.inputs in (PAIR, ANY):
        inputs.append(_tensor(TEXT_PAIR, "BYTES", [-1]))
    width = len(identity.labels)
    first = (
        _tensor("value", "FP32", [-1])
        if identity.task == REGRESSION
        else _tensor("label", "BYTES", [-1])
    )
    return {
        "name": identity.name,
        "versions": [VERSION],
        "platform": PLATFORM,
        "inputs": inputs,
        "outputs": [
            first,
            _tensor("scores", "FP32", [-1, width]),
            _tensor("truncated", "BOOL", [-1]),
        ],
        "parameters": {
            "labels": json.dumps(list(identity.labels)),
            "task": identity.task,
            "takes": identity.inputs,
            "max_length": identity.max_length,
            "sha256": identity.sha256,
            "validated": identity.validated,
        },
    }


def _split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """(JSON header, binary tail) of a request body."""
    if header_length is None:
        return body, b""
    if not header_length.isdigit() or int(header_length) > len(body):
        raise ApiError(
            BAD,
            "bad_header_length",
            f"Inference-Header-Content-Length {header_length!r} is not a byte count within "
            f"the {len(body)}-byte body",
        )
    size = int(header_length)
    return body[:size], body[size:]


def _read_request(header: bytes) -> InferRequest:
    try:
        return InferRequest.model_validate_json(header)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        if error["type"] == "json_invalid":
            raise ApiError(
                BAD, "invalid_json", f"the request is not valid UTF-8 JSON ({error['msg']})"
            ) from None
        where = ".".join(str(part) for part in error["loc"]) or "the request"
        raise ApiError(
            BAD,
            "invalid_request",
            f"{where}: {error['msg']}; see the Open Inference Protocol's inference request",
        ) from None


def _flatten(data: list) -> list:
    flat: list = []
    for value in data:
        flat.extend(_flatten(value) if isinstance(value, list) else [value])
    return flat


def _decode_bytes(name: str, raw: bytes) -> list[str]:
    """BYTES elements in the binary encoding: 4-byte little-endian length, then the bytes."""
    texts, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise ApiError(BAD, "bad_binary", f"{name}: binary data ends inside a length prefix")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise ApiError(BAD, "bad_binary", f"{name}: binary data ends inside an element")
        try:
            texts.append(raw[offset : offset + length].decode("utf-8"))
        except UnicodeDecodeError:
            raise ApiError(BAD, "bad_binary", f"{name}: an element is not UTF-8 text") from None
        offset += length
    return texts


def _texts(tensor: TensorInput, tail: bytes, offset: int) -> tuple[list[str], int]:
    """A BYTES tensor's texts, from its JSON data or its slice of the binary tail; returns the
    texts and the tail offset after them."""
    name = tensor.name
    if tensor.datatype != "BYTES":
        raise ApiError(
            BAD, "wrong_datatype", f"input {name!r} is {tensor.datatype}; send BYTES (UTF-8 text)"
        )
    if (
        not tensor.shape
        or any(n < 0 for n in tensor.shape)
        or any(n != 1 for n in tensor.shape[1:])
    ):
        raise ApiError(
            BAD, "wrong_shape", f"input {name!r} has shape {tensor.shape}; send [N] or [N, 1]"
        )
    size = tensor.parameters.get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size < 0 or offset + size > len(tail):
            raise ApiError(
                BAD,
                "bad_binary",
                f"input {name!r}: binary_data_size {size!r} runs past the body's binary data",
            )
        texts = _decode_bytes(name, tail[offset : offset + size])
        offset += size
    elif tensor.data is None:
        raise ApiError(BAD, "missing_data", f"input {name!r} has neither data nor binary data")
    else:
        texts = _flatten(tensor.data)
        for index, value in enumerate(texts):
            if not isinstance(value, str):
                got = type(value).__name__.replace("NoneType", "null")
                raise ApiError(
                    BAD, "wrong_type", f"input {name!r}[{index}]: expected a string, got {got}"
                )
    if len(texts) != tensor.shape[0]:
        raise ApiError(
            BAD,
            "wrong_shape",
            f"input {name!r}: shape {tensor.shape} says {tensor.shape[0]} elements, "
            f"the data holds {len(texts)}",
        )
    return texts, offset


def parse_infer(
    body: bytes,
    header_length: str | None,
    identity: ModelIdentity,
    max_items: int,
    max_text_chars: int,
) -> Infer:
    """Validate an infer request against the model's inputs and the server's limits."""
    header, tail = _split_body(body, header_length)
    request = _read_request(header)
    texts: dict[str, list[str]] = {}
    offset = 0
    for tensor in request.inputs:
        if tensor.name not in (TEXT, TEXT_PAIR):
            raise ApiError(
                BAD,
                "unknown_input",
                f"unknown input {tensor.name!r}; the model takes "
                + ("'text' and 'text_pair'" if identity.inputs != SINGLE else "'text'"),
            )
        if tensor.name in texts:
            raise ApiError(BAD, "duplicate_input", f"input {tensor.name!r} is given twice")
        texts[tensor.name], offset = _texts(tensor, tail, offset)
    if TEXT not in texts:
        raise ApiError(BAD, "missing_input", "no input 'text'; give the texts as a BYTES tensor")
    if TEXT_PAIR in texts and identity.inputs == SINGLE:
        raise ApiError(
            BAD,
            "pairs_not_supported",
            "this model was trained on single texts; send the input 'text' only",
        )
    if TEXT_PAIR not in texts and identity.inputs == PAIR:
        raise ApiError(
            BAD,
            "pairs_required",
            "this model was trained on text pairs; send 'text' and 'text_pair'",
        )
    first, second = texts[TEXT], texts.get(TEXT_PAIR)
    if second is not None and len(second) != len(first):
        raise ApiError(
            BAD,
            "wrong_shape",
            f"'text' has {len(first)} elements and 'text_pair' {len(second)}; give one each",
        )
    check_count(TEXT, len(first), max_items, BAD)
    items = []
    for index, text in enumerate(first):
        check_text(f"{TEXT}[{index}]", text, max_text_chars, BAD)
        if second is not None:
            check_text(f"{TEXT_PAIR}[{index}]", second[index], max_text_chars, BAD)
        items.append(Item(text, None if second is None else second[index]))
    return Infer(request.id, items, _wanted_outputs(request, identity))


def _wanted_outputs(request: InferRequest, identity: ModelIdentity) -> dict[str, bool]:
    """Output name -> answer in binary; every output when the request names none."""
    all_binary = bool(request.parameters.get("binary_data_output", False))
    available = output_names(identity)
    if request.outputs is None:
        return {name: all_binary for name in available}
    wanted = {}
    for output in request.outputs:
        if output.name not in available:
            raise ApiError(
                BAD,
                "unknown_output",
                f"unknown output {output.name!r}; the model answers {', '.join(available)}",
            )
        wanted[output.name] = bool(output.parameters.get("binary_data", all_binary))
    return wanted


def _encode_bytes(values: list[str]) -> bytes:
    chunks = []
    for value in values:
        raw = value.encode("utf-8")
        chunks.append(struct.pack("<I", len(raw)) + raw)
    return b"".join(chunks)


def _output_tensors(identity: ModelIdentity, predictions: list[dict]) -> dict[str, tuple]:
    """name -> (datatype, shape, values as a list or array)."""
    count = len(predictions)
    scores = np.array(
        [[p["scores"][label] for label in identity.labels] for p in predictions],
        dtype=np.float32,
    )  # (N, C)
    tensors = {
        "scores": ("FP32", [count, len(identity.labels)], scores),
        "truncated": ("BOOL", [count], np.array([p["truncated"] for p in predictions])),
    }
    if identity.task == REGRESSION:
        values = np.array([p["value"] for p in predictions], dtype=np.float32)
        tensors["value"] = ("FP32", [count], values)
    else:
        tensors["label"] = ("BYTES", [count], [p["label"] for p in predictions])
    return tensors


def render_infer(
    identity: ModelIdentity, infer: Infer, predictions: list[dict]
) -> tuple[bytes, int | None]:
    """The $inference_response body, and the JSON header's length when binary outputs follow
    it (the value of Inference-Header-Content-Length), else None."""
    tensors = _output_tensors(identity, predictions)
    outputs, binary = [], []
    for name, as_binary in infer.outputs.items():
        datatype, shape, values = tensors[name]
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
        if as_binary:
            raw = (
                _encode_bytes(values)
                if datatype == "BYTES"
                else np.ascontiguousarray(values).tobytes()
            )
            entry["parameters"] = {"binary_data_size": len(raw)}
            binary.append(raw)
        else:
            entry["data"] = values if datatype == "BYTES" else np.ravel(values).tolist()
        outputs.append(entry)
    response: dict[str, Any] = {"model_name": identity.name, "model_version": VERSION}
    if infer.id is not None:
        response["id"] = infer.id
    response["outputs"] = outputs
    header = json.dumps(response, separators=(",", ":")).encode()
    if not binary:
        return header, None
    return header + b"".join(binary), len(header)
