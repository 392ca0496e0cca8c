"""Wire API name -> adapter. New wire APIs register here, not in ``if`` chains."""

from __future__ import annotations

from services.edge.providers.anthropic import AnthropicAdapter
from services.edge.providers.base import Adapter, Embedder, ProviderNotCallable
from services.edge.providers.bedrock import BedrockAdapter
from services.edge.providers.cohere import CohereAdapter
from services.edge.providers.echo import EchoAdapter
from services.edge.providers.gemini import GeminiAdapter
from services.edge.providers.openai import AzureAdapter, OpenAIAdapter
from services.edge.providers.vertex import VertexAdapter


class Registry:
    def __init__(self) -> None:
        self._adapters: dict[str, Adapter] = {
            "openai": OpenAIAdapter(),
            "azure": AzureAdapter(),
            "anthropic": AnthropicAdapter(),
            "gemini": GeminiAdapter(),
            "vertex": VertexAdapter(),
            "bedrock": BedrockAdapter(),
            "cohere": CohereAdapter(),
            "echo": EchoAdapter(),
        }

    def register(self, api: str, adapter: Adapter) -> None:
        self._adapters[api] = adapter

    def get(self, api: str, provider: str) -> Adapter:
        adapter = self._adapters.get(api)
        if adapter is None:
            raise ProviderNotCallable(
                f"provider {provider!r} speaks the {api!r} wire API, which this gateway cannot call yet"
            )
        return adapter

    def embedder(self, api: str, provider: str) -> Embedder:
        adapter = self._adapters.get(api)
        if adapter is None or not isinstance(adapter, Embedder):
            raise ProviderNotCallable(
                f"provider {provider!r} ({api!r} wire API) has no embeddings endpoint this gateway can call"
            )
        return adapter
