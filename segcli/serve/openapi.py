"""`GET /openapi.json`: the API described by hand (OpenAPI 3.1, https://spec.openapis.org/oas/v3.1.0)."""

from __future__ import annotations

from typing import Any

from segcli import __version__

_ERROR = {"description": "{\"error\": \"<one line>\"}",
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _json(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"type": "object"}}}}


def _segment(kinds: list[str]) -> dict[str, Any]:
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {
        "summary": "Segment one image and answer one output kind, the bytes `segcli predict` writes for it.",
        "parameters": [
            {"name": "outputs", "in": "query", "schema": {"type": "string", "enum": kinds, "default": "label"},
             "description": "label: palettized PNG (pixel = class index); overlay; cutout: RGBA PNG; json: the "
                            "summary; rle: COCO RLE; probs: float16 .npz; masks: a zip of NAME_mask_CLASS.png."},
            {"name": "classes", "in": "query", "schema": {"type": "string"},
             "description": "Comma-separated class names or indices that masks, cutout and rle keep."},
            {"name": "name", "in": "query", "schema": {"type": "string"},
             "description": "The image's file name for a raw body (in the JSON summary and the masks' names)."},
        ],
        "requestBody": {"required": True, "content": {
            "image/*": binary, "application/octet-stream": binary,
            "multipart/form-data": {"schema": {"type": "object", "required": ["image"],
                                               "properties": {"image": {"type": "string", "format": "binary"}}}},
        }},
        "responses": {
            "200": {"description": "The output's bytes; header Server-Timing: decode, queue, model, encode (ms).",
                    "content": {"image/png": binary, "application/json": {"schema": {"type": "object"}},
                                "application/zip": binary, "application/octet-stream": binary}},
            **{code: _ERROR for code in ("400", "401", "413", "415", "500", "501", "503", "504")},
        },
    }


def openapi_schema(models: dict[str, Any]) -> dict[str, Any]:
    """The schema, with the loaded model's output kinds."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "segcli serve", "version": __version__,
                 "description": f"Semantic segmentation with {models['model']} ({models['checkpoint']})."},
        "paths": {
            "/v1/segment": {"post": _segment(list(models["outputs"]))},
            "/v1/models": {"get": {"summary": "The loaded model: checkpoint, classes, palette, limits.",
                                   "responses": {"200": _json("The model"), "401": _ERROR}}},
            "/healthz": {"get": {"summary": "Liveness (never needs the token).", "responses": {"200": _json("ok")}}},
            "/metrics": {"get": {"summary": "Prometheus text: requests by status, latency and batch-size histograms.",
                                 "responses": {"200": {"description": "text/plain; version=0.0.4"}, "401": _ERROR}}},
            "/openapi.json": {"get": {"summary": "This schema.", "responses": {"200": _json("OpenAPI 3.1")}}},
            "/": {"get": {"summary": "A web page: drop an image, see its overlay, classes and timings.",
                          "responses": {"200": {"description": "text/html"}}}},
        },
        "components": {
            "schemas": {"Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
