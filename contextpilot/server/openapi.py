"""The OpenAPI document, made to say exactly what the server does.

FastAPI derives most of it from the typed models; this adds what the
models cannot carry: the configured size limits (``maxItems`` /
``maxLength``) and the all-ints-or-all-strings rule on ``contexts``, the
responses produced outside the handlers (401 from the API key, 413 from
the body cap, 400 for bodies that are not JSON), the proxy's request
bodies and the engine errors it maps, and the bearer security scheme.
Schema-driven fuzzing (``.ci/steps/40-fuzz-schemathesis.sh``) checks every
response against this document.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from contextpilot.server.config import ServerConfig
from contextpilot.server.limits import Limits, contexts_schema
from contextpilot.server.models import ChatCompletionBody, CompletionBody, EngineErrorBody, ErrorBody

__all__ = ["install"]

PROXY_BODIES: dict[str, type[BaseModel]] = {
    "/v1/completions": CompletionBody,
    "/v1/chat/completions": ChatCompletionBody,
}


def install(app: FastAPI, config: ServerConfig, open_paths: set[str]) -> None:
    """Replace ``app.openapi`` by a generator applying :func:`patch`."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            patch(schema, config, open_paths)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _ref(schema: dict[str, Any], model: type[BaseModel]) -> dict[str, str]:
    """Register ``model`` (and its nested models) as components; return a $ref."""
    comps = schema.setdefault("components", {}).setdefault("schemas", {})
    js = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in js.pop("$defs", {}).items():
        comps.setdefault(name, sub)
    comps.setdefault(model.__name__, js)
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(schema: dict[str, Any], description: str, model: type[BaseModel]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema, model)}}}


def patch(schema: dict[str, Any], config: ServerConfig, open_paths: set[str]) -> None:
    limits = Limits.from_config(config)
    comps = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, min_blocks in (("ReorderRequest", 1), ("DedupRequest", 0)):
        if name in comps:
            comps[name]["properties"]["contexts"] = contexts_schema(limits, min_blocks)
    if "EvictRequest" in comps:
        comps["EvictRequest"]["properties"]["request_ids"]["maxItems"] = limits.max_contexts
    warm = comps.get("WarmRequest", {}).get("properties", {})
    for name in ("prefixes", "blocks"):
        for alt in warm.get(name, {}).get("anyOf", []):
            if alt.get("type") == "array":
                alt["maxItems"] = limits.max_contexts
                if name == "prefixes":
                    alt["items"]["maxLength"] = limits.max_block_chars
                else:
                    alt["items"]["maxItems"] = limits.max_blocks_per_context
                    alt["items"]["items"]["maxLength"] = limits.max_block_chars

    engine_error = _json(schema, "engine error mapped by the proxy", EngineErrorBody)
    for path, ops in schema.get("paths", {}).items():
        for method, op in ops.items():
            responses = op.setdefault("responses", {})
            if config.api_key and path not in open_paths:
                responses.setdefault("401", _json(schema, "missing or wrong API key", ErrorBody))
            if method in ("post", "put", "patch"):
                responses.setdefault("400", _json(schema, "body is not (UTF-8) JSON", ErrorBody))
                responses.setdefault("413", _json(schema, "body over --max-body-bytes", ErrorBody))
            if path in PROXY_BODIES:
                op["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(schema, PROXY_BODIES[path])}},
                }
                responses["200"] = {
                    "description": "the engine's response, unchanged (JSON, or an event stream)",
                    "content": {"application/json": {"schema": {}}, "text/event-stream": {"schema": {}}},
                }
                responses.setdefault(
                    "422",
                    {
                        "description": "not an OpenAI request of this kind",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/HTTPValidationError"}
                            }
                        },
                    },
                )
                for code in ("502", "503", "504"):
                    responses[code] = engine_error
                responses["default"] = {
                    "description": "any other status the engine answered, relayed unchanged",
                    "content": {"application/json": {"schema": {}}},
                }
    if config.api_key:
        schema["components"].setdefault("securitySchemes", {})["bearer"] = {
            "type": "http",
            "scheme": "bearer",
        }
        schema["security"] = [{"bearer": []}]
        for path in open_paths:
            for op in schema.get("paths", {}).get(path, {}).values():
                op["security"] = []
