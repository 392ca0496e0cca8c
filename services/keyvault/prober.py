"""Bringing refused provider keys back by themselves.

A key a provider refused (401/403) is marked invalid and no edge uses it. Every
``GATEWAY_KEY_PROBE_SECONDS`` keyvault tries each invalid key with the provider's cheapest
authenticated call, listing models; a key the provider accepts again is put back in service
and every edge fetches it. Keyvault already holds the plaintext; the probe is audited like
any decryption. A key an admin disabled is never probed.
"""

from __future__ import annotations

import logging

import aiohttp

from shared.catalog import ProviderConfig

log = logging.getLogger("switchyard.keyvault.prober")

_TIMEOUT = aiohttp.ClientTimeout(total=10)


def probe_request(provider: str, cfg: ProviderConfig, secret: str) -> tuple[str, dict[str, str]] | None:
    """The URL and headers of a model listing with this key; None for an API without one."""
    base = cfg.base_url.rstrip("/")
    if not base:
        return None
    family = cfg.account_of or provider
    if cfg.api == "anthropic":
        return f"{base}/v1/models", {"x-api-key": secret, "anthropic-version": cfg.api_version or "2023-06-01"}
    if cfg.api == "gemini":
        return f"{base}/v1beta/models", {"x-goog-api-key": secret}
    if cfg.api == "cohere":
        return f"{base}/v1/models", {"authorization": f"Bearer {secret}"}
    if cfg.api != "openai":
        return None
    if family == "azure":
        return f"{base}/openai/models?api-version={cfg.api_version or '2024-10-21'}", {"api-key": secret}
    value = f"{cfg.auth_scheme} {secret}" if cfg.auth_scheme else secret
    return f"{base}/models", {cfg.auth_header: value}


async def accepted(http: aiohttp.ClientSession, provider: str, cfg: ProviderConfig, secret: str) -> bool | None:
    """True if the provider accepts the key, False if it refuses it (401/403), None when the
    probe says nothing (unreachable, 5xx, no listing endpoint)."""
    request = probe_request(provider, cfg, secret)
    if request is None:
        return None
    url, headers = request
    try:
        async with http.get(url, headers=headers, timeout=_TIMEOUT) as resp:
            await resp.read()
            status = resp.status
    except (TimeoutError, aiohttp.ClientError) as exc:
        log.info("probe of a %s key: provider unreachable (%s)", provider, type(exc).__name__)
        return None
    if status in (401, 403):
        return False
    return True if 200 <= status < 300 else None
