"""The edge's OpenAPI description (``/openapi.json``): every public and admin operation, with
its request body, its security schemes and its error replies.

FastAPI describes the admin routes from their signatures, but their bodies are read by
``parse_body`` (for errors in OpenAI's shape) and the model endpoints are plain routes on the
hot path: this module adds what the framework cannot see. A route that reads a body names its
model with ``openapi_extra=request_body(Model)``; the model endpoints are described below from
the APIs they speak (OpenAI's chat completions, embeddings and Responses, Anthropic's Messages).
Every operation may answer an error (``default``), in OpenAI's shape or, on the Messages
paths, in Anthropic's. ``tests/e2e/test_fuzz.py`` runs schemathesis against this description.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from services.edge.errors import MESSAGES_PATHS

Schema = dict[str, Any]

_MODELS: dict[str, type[BaseModel]] = {}  # what request_body() named, for the components
_REF = "#/components/schemas/{model}"
PREFIXES = ("/v1", "/ai/v1")
UNAUTHENTICATED = ("/healthz", "/readyz")


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads ``model`` as its JSON body."""
    _MODELS[model.__name__] = model
    return {"requestBody": _json_body({"$ref": _REF.format(model=model.__name__)})}


def _json_body(schema: Schema) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> Schema:
    return {"$ref": _REF.format(model=name)}


_NULLABLE_STRING: Schema = {"anyOf": [{"type": "string"}, {"type": "null"}]}

_ERRORS: dict[str, Schema] = {
    "Error": {
        "type": "object",
        "description": "OpenAI's error shape.",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type"],
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "param": _NULLABLE_STRING,
                    "code": _NULLABLE_STRING,
                },
            }
        },
    },
    "AnthropicError": {
        "type": "object",
        "description": "Anthropic's error shape (the Messages API).",
        "required": ["type", "error"],
        "properties": {
            "type": {"const": "error"},
            "error": {
                "type": "object",
                "required": ["type", "message"],
                "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}

_CONTENT_PART: Schema = {
    "type": "object",
    "required": ["type"],
    "properties": {"type": {"type": "string", "minLength": 1}},
}
_MODEL_NAME: Schema = {"type": "string", "minLength": 1, "maxLength": 256, "examples": ["gpt-4o"]}

_BODIES: dict[str, Schema] = {
    "ChatCompletionRequest": {
        "type": "object",
        "description": "OpenAI's chat completions request; fields not listed pass to the provider "
        "or are refused by name.",
        "required": ["model", "messages"],
        "properties": {
            "model": _MODEL_NAME,
            "messages": {
                "type": "array",
                "minItems": 1,
                "maxItems": 2048,
                "items": {
                    "type": "object",
                    "required": ["role"],
                    "properties": {
                        "role": {"enum": ["system", "developer", "user", "assistant", "tool"]},
                        "content": {
                            "anyOf": [
                                {"type": "string"},
                                {"type": "array", "maxItems": 1024, "items": _CONTENT_PART},
                                {"type": "null"},
                            ]
                        },
                        "name": {"type": "string"},
                        "tool_call_id": {"type": "string"},
                    },
                },
            },
            "stream": {"type": "boolean"},
            "max_tokens": {"type": "integer", "minimum": 1},
            "max_completion_tokens": {"type": "integer", "minimum": 1},
            "temperature": {"type": "number", "minimum": 0, "maximum": 2},
            "top_p": {"type": "number", "minimum": 0, "maximum": 1},
            "n": {"type": "integer", "minimum": 1, "maximum": 128},
            "user": {"type": "string"},
            "tools": {"type": "array", "maxItems": 128, "items": {"type": "object"}},
        },
    },
    "EmbeddingRequest": {
        "type": "object",
        "required": ["model", "input"],
        "properties": {
            "model": {**_MODEL_NAME, "examples": ["text-embedding-3-small"]},
            "input": {
                "anyOf": [
                    {"type": "string"},
                    {"type": "array", "minItems": 1, "maxItems": 2048, "items": {"type": "string"}},
                    {"type": "array", "minItems": 1, "maxItems": 2048, "items": {"type": "integer"}},
                ]
            },
            "encoding_format": {"enum": ["float", "base64"]},
            "dimensions": {"type": "integer", "minimum": 1},
            "user": {"type": "string"},
        },
    },
    "MessagesRequest": {
        "type": "object",
        "description": "Anthropic's Messages request.",
        "required": ["model", "max_tokens", "messages"],
        "properties": {
            "model": {**_MODEL_NAME, "examples": ["claude-sonnet-4-6"]},
            "max_tokens": {"type": "integer", "minimum": 1},
            "messages": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["role", "content"],
                    "properties": {
                        "role": {"enum": ["user", "assistant"]},
                        "content": {
                            "anyOf": [{"type": "string"}, {"type": "array", "items": _CONTENT_PART}],
                        },
                    },
                },
            },
            "system": {"anyOf": [{"type": "string"}, {"type": "array", "items": _CONTENT_PART}]},
            "stream": {"type": "boolean"},
            "temperature": {"type": "number", "minimum": 0, "maximum": 1},
        },
    },
    "CountTokensRequest": {
        "type": "object",
        "required": ["model", "messages"],
        "properties": {
            "model": {**_MODEL_NAME, "examples": ["claude-sonnet-4-6"]},
            "messages": {"type": "array", "minItems": 1, "items": {"type": "object"}},
            "system": {"anyOf": [{"type": "string"}, {"type": "array", "items": _CONTENT_PART}]},
        },
    },
    "ResponseRequest": {
        "type": "object",
        "description": "OpenAI's Responses API request.",
        "required": ["model", "input"],
        "properties": {
            "model": _MODEL_NAME,
            "input": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]},
            "instructions": {"type": "string"},
            "previous_response_id": {"type": "string"},
            "store": {"type": "boolean"},
            "stream": {"type": "boolean"},
            "max_output_tokens": {"type": "integer", "minimum": 1},
        },
    },
}

_REPLIES: dict[str, Schema] = {
    "ChatCompletion": {
        "type": "object",
        "required": ["id", "object", "model", "choices"],
        "properties": {
            "id": {"type": "string"},
            "object": {"const": "chat.completion"},
            "model": {"type": "string"},
            "choices": {"type": "array", "items": {"type": "object"}},
            "usage": {"type": "object"},
        },
    },
    "EmbeddingList": {
        "type": "object",
        "required": ["object", "data", "model"],
        "properties": {
            "object": {"const": "list"},
            "data": {"type": "array", "items": {"type": "object", "required": ["embedding", "index"]}},
            "model": {"type": "string"},
        },
    },
    "Message": {
        "type": "object",
        "required": ["id", "type", "role", "content", "model"],
        "properties": {
            "id": {"type": "string"},
            "type": {"const": "message"},
            "role": {"const": "assistant"},
            "content": {"type": "array", "items": {"type": "object"}},
            "model": {"type": "string"},
        },
    },
    "TokenCount": {
        "type": "object",
        "required": ["input_tokens"],
        "properties": {"input_tokens": {"type": "integer", "minimum": 0}},
    },
    "Response": {
        "type": "object",
        "required": ["id", "object"],
        "properties": {"id": {"type": "string"}, "object": {"const": "response"}, "output": {"type": "array"}},
    },
    "ResponseDeleted": {
        "type": "object",
        "required": ["id", "deleted"],
        "properties": {"id": {"type": "string"}, "deleted": {"type": "boolean"}},
    },
    "InputItemList": {
        "type": "object",
        "required": ["object", "data"],
        "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": {"type": "object"}}},
    },
}


_SSE_EVENT: Schema = {
    "type": "object",
    "required": ["data"],
    "properties": {"event": {"type": "string"}, "data": {"type": "string"}, "id": {"type": "string"}},
}


def _answer(reply: str, stream: bool) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": _ref(reply)}}
    if stream:  # each server-sent event (OpenAPI 3.1: the schema of one event)
        content["text/event-stream"] = {"schema": _SSE_EVENT}
    return {"200": {"description": "The answer (server-sent events when `stream` is true).", "content": content}}


def _operation(summary: str, tag: str, responses: dict[str, Any], body: str | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": responses}
    if body is not None:
        op["requestBody"] = _json_body(_ref(body))
    return op


_RESPONSE_ID = [{"name": "response_id", "in": "path", "required": True, "schema": {"type": "string"}}]


def _model_paths(prefix: str) -> dict[str, dict[str, Any]]:
    """The model endpoints, served outside the framework's routing."""
    retrieve = _operation("Retrieve a stored response", "Responses API", _answer("Response", False))
    delete = _operation("Delete a stored response", "Responses API", _answer("ResponseDeleted", False))
    items = _operation("A stored response's input items", "Responses API", _answer("InputItemList", False))
    for op in (retrieve, delete, items):
        op["parameters"] = _RESPONSE_ID
    return {
        f"{prefix}/chat/completions": {
            "post": _operation(
                "Create a chat completion", "OpenAI API", _answer("ChatCompletion", True), "ChatCompletionRequest"
            )
        },
        f"{prefix}/embeddings": {
            "post": _operation("Create embeddings", "OpenAI API", _answer("EmbeddingList", False), "EmbeddingRequest")
        },
        f"{prefix}/messages": {
            "post": _operation(
                "Create a message", "Anthropic Messages API", _answer("Message", True), "MessagesRequest"
            )
        },
        f"{prefix}/messages/count_tokens": {
            "post": _operation(
                "Count a message's tokens", "Anthropic Messages API", _answer("TokenCount", False), "CountTokensRequest"
            )
        },
        f"{prefix}/responses": {
            "post": _operation("Create a response", "Responses API", _answer("Response", True), "ResponseRequest")
        },
        f"{prefix}/responses/{{response_id}}": {"get": retrieve, "delete": delete},
        f"{prefix}/responses/{{response_id}}/input_items": {"get": items},
    }


def describe(app: FastAPI) -> dict[str, Any]:
    """The whole description; built once per process."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    spec = get_openapi(title=app.title, version=app.version, routes=app.routes)
    paths: dict[str, dict[str, Any]] = spec.setdefault("paths", {})
    for prefix in PREFIXES:
        paths.update(_model_paths(prefix))
    schemas: dict[str, Any] = spec.setdefault("components", {}).setdefault("schemas", {})
    for name, model in _MODELS.items():
        found = model.model_json_schema(ref_template=_REF)
        schemas.update(found.pop("$defs", {}))
        schemas[name] = found
    schemas.update(_ERRORS | _BODIES | _REPLIES)
    spec["components"]["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "An admin key or a client key (sk-sy-...)."},
        "apiKey": {"type": "apiKey", "in": "header", "name": "api-key", "description": "The same keys (Azure SDKs)."},
        "anthropicKey": {"type": "apiKey", "in": "header", "name": "x-api-key", "description": "Anthropic SDKs."},
    }
    spec["security"] = [{"bearer": []}, {"apiKey": []}]
    for path, operations in paths.items():
        anthropic = path.rstrip("/").endswith(MESSAGES_PATHS)
        for op in operations.values():
            responses = op.setdefault("responses", {})
            responses.pop("422", None)  # validation errors are 400s here (services/edge/errors.py)
            error = "AnthropicError" if anthropic else "Error"
            responses["default"] = {
                "description": "An error, in the caller's API shape.",
                "content": {"application/json": {"schema": _ref(error)}},
            }
            if path in UNAUTHENTICATED:
                op["security"] = []
            elif anthropic:
                op["security"] = [{"anthropicKey": []}, {"bearer": []}]
    app.openapi_schema = spec
    return spec


def install(app: FastAPI) -> None:
    app.openapi = lambda: describe(app)  # type: ignore[method-assign]
