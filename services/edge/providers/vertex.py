"""Google Vertex AI: Gemini's ``generateContent`` wire format (the Gemini adapter's request and
reply translation, unchanged) at a Google Cloud project's Vertex endpoint, authenticated with
a service account.

The provider key is the service account's JSON key. The edge signs a JWT with it (google-auth's
signer) and trades it at the key's ``token_uri`` for an access token, with the shared upstream
client; the token is cached per key until a minute before it expires, and one exchange serves
every request that waits for it. The project is the key's ``project_id``; the location is the
provider's (``VERTEX_LOCATION``). A key the token endpoint refuses is a 401 of the provider, so
the key goes out of service like any refused key.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

from services.edge.providers import common
from services.edge.providers.base import Call, Completion
from services.edge.providers.gemini import GeminiAdapter

if TYPE_CHECKING:  # google-auth with its crypto (some 25 MiB) is imported on the first Vertex AI call
    from google.auth import crypt
from services.edge.upstream import TRANSPORT_ERRORS, transport_error
from shared.errors import UNSUPPORTED, UPSTREAM, GatewayError

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
AUDIENCE = "https://oauth2.googleapis.com/token"  # what Google's token endpoint expects, wherever token_uri points
_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_MARGIN = 60.0  # seconds before expiry a token is renewed


@dataclass(frozen=True)
class ServiceAccount:
    email: str
    project: str
    token_uri: str
    signer: crypt.Signer


def service_account(secret: str, provider: str) -> ServiceAccount:
    """The service account a provider key holds; a key that is not one is refused like a key
    the provider refuses (it cannot work)."""
    from google.auth import crypt

    try:
        info = json.loads(secret)
        signer = crypt.RSASigner.from_service_account_info(info)  # type: ignore[no-untyped-call]
        return ServiceAccount(str(info["client_email"]), str(info["project_id"]), str(info["token_uri"]), signer)
    except (ValueError, KeyError, TypeError) as exc:
        message = (
            f"the key of provider {provider!r} is not a service account's JSON key "
            "(project_id, private_key, client_email, token_uri)"
        )
        raise common.provider_error(401, message, provider, {}) from exc  # out of service, as a refused key


class Tokens:
    """Access tokens by provider key, cached until shortly before they expire."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[str, float]] = {}
        self._pending: dict[str, asyncio.Future[tuple[str, float]]] = {}

    async def token(self, call: Call, account: ServiceAccount) -> str:
        assert call.credential is not None
        key = call.credential.key_id
        cached = self._cache.get(key)
        if cached is not None and cached[1] - _MARGIN > time.time():
            return cached[0]
        pending = self._pending.get(key)
        if pending is None:  # one exchange per key, however many requests wait for it
            pending = asyncio.ensure_future(self._exchange(call, account))
            self._pending[key] = pending
            pending.add_done_callback(lambda _: self._pending.pop(key, None))
        token, expiry = await asyncio.shield(pending)
        self._cache[key] = (token, expiry)
        return token

    async def _exchange(self, call: Call, account: ServiceAccount) -> tuple[str, float]:
        now = int(time.time())
        claims = {"iss": account.email, "scope": SCOPE, "aud": AUDIENCE, "iat": now, "exp": now + 3600}
        from google.auth import jwt

        assertion = jwt.encode(account.signer, claims).decode()  # type: ignore[no-untyped-call]
        form = {"grant_type": _GRANT, "assertion": assertion}
        provider = call.route.provider
        try:
            async with call.http.post(account.token_uri, data=form) as resp:
                raw = await resp.read()
                status = resp.status
        except TRANSPORT_ERRORS as exc:
            raise transport_error(exc, provider) from exc
        if status != 200:  # Google answers a key it does not accept with 400 invalid_grant
            message = f"provider {provider!r} refused the service account {account.email} (HTTP {status})"
            raise common.provider_error(401 if status in (400, 401, 403) else status, message, provider, {})
        reply = common.parse_json_reply(raw, provider)
        token, lifetime = reply.get("access_token"), reply.get("expires_in")
        if not isinstance(token, str) or not isinstance(lifetime, int | float):
            raise GatewayError(UPSTREAM, f"provider {provider!r} sent a token reply of an unexpected shape")
        return token, time.time() + float(lifetime)


class VertexAdapter(GeminiAdapter):
    def __init__(self) -> None:
        self.tokens = Tokens()

    async def target(self, call: Call, method: str) -> tuple[str, dict[str, str]]:
        if call.credential is None:
            raise GatewayError(UPSTREAM, f"provider {call.route.provider!r} has no service account key")
        account = service_account(call.credential.secret, call.route.provider)
        token = await self.tokens.token(call, account)
        base = call.provider.base_url.rstrip("/")
        location = quote(call.provider.location or "global", safe="")
        project, model = quote(account.project, safe=""), quote(call.route.upstream_model, safe="")
        url = f"{base}/v1/projects/{project}/locations/{location}/publishers/google/models/{model}:{method}"
        headers = {
            "content-type": "application/json",
            "accept": "application/json",
            "x-client-request-id": call.request_id,
            "authorization": f"Bearer {token}",
        }
        return url, headers

    async def embed(self, call: Call) -> Completion:
        raise GatewayError(
            UNSUPPORTED,
            f"embeddings through {call.route.provider!r} (Vertex AI) are not supported yet; "
            "call the model through gemini/ instead.",
            param="model",
        )
