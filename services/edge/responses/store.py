"""Stored responses: what ``store: true`` keeps so that ``previous_response_id``,
``GET /v1/responses/{id}`` and its input items work on every edge at once.

One entry per response in the ``switchyard_responses`` KV bucket (JetStream, file storage,
replicated like every bucket; keyvault makes it with the TTL ``GATEWAY_RESPONSES_TTL_SECONDS``).
An entry holds the response object (reasoning content included), this turn's input items and
the ids of the responses it continues, oldest first (for a response OpenAI itself keeps, only
where it is), so a conversation is read back with
one concurrent get per turn and no entry repeats another's items. The bucket is read without
direct gets: the stream's leader answers, so a turn written on one edge is read on another
the moment its write was acknowledged.

Entries are encrypted (AES-256-GCM, the response id as associated data) with the responses
key keyvault keeps in Vault and delivers sealed to edges with a registered identity, beside the
provider keys: the bucket, its stream's files and anyone reading the bus with the edges' NATS
credentials see ciphertext. An entry stored before encryption (plaintext JSON) is still read.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any

import nats.errors
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from nats.js.errors import KeyDeletedError, KeyNotFoundError
from pydantic import BaseModel, ValidationError

from shared.bus import Bus, KeyValue
from shared.errors import INVALID_REQUEST, NOT_FOUND, TOO_LARGE, UNAVAILABLE, GatewayError
from shared.subjects import RESPONSES_BUCKET

log = logging.getLogger("switchyard.edge.responses")

# What an entry may hold beside its items (the key, headers, the JSON envelope, the cipher's
# marker, nonce and tag).
_ENVELOPE = 4096
_SEALED = b"\x00sy1"  # an encrypted entry: this, a 12-byte nonce, the ciphertext and its tag
_NONCE = 12


class StoredResponse(BaseModel):
    owner: str  # the user whose key created it: only that user's keys (and admins) may read it
    response: dict[str, Any]  # the response object, reasoning content included
    input: list[dict[str, Any]] = []  # this turn's input items, each with an id
    chain: list[str] = []  # the responses this one continues, oldest first
    # A response OpenAI keeps (passed through): only where it is, the provider (or named
    # account) and the model it was made with; its content stays with OpenAI.
    held_by: str = ""
    model: str = ""


class ResponseStore:
    def __init__(self, bus: Bus, key: Callable[[], bytes | None], timeout: float = 5.0) -> None:
        self.bus = bus
        self.key = key  # the responses key, once keyvault has delivered it
        self.timeout = timeout
        self._kv: KeyValue | None = None

    def _cipher(self) -> AESGCM:
        key = self.key()
        if key is None:
            raise GatewayError(UNAVAILABLE, "The response store's key has not arrived from keyvault yet; try again.")
        return AESGCM(key)

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            self._kv = await self._io(self.bus.kv(RESPONSES_BUCKET, create=False))
        return self._kv

    async def _io(self, work: Any) -> Any:
        try:
            async with asyncio.timeout(self.timeout):
                return await work
        except (TimeoutError, nats.errors.Error, OSError) as exc:
            if isinstance(exc, KeyNotFoundError | KeyDeletedError):
                raise
            raise GatewayError(UNAVAILABLE, "The response store is unreachable; try again shortly.") from exc

    def room(self) -> int:
        """The most an entry may hold (the bus's largest message, less the envelope)."""
        return max(self.bus.nc.max_payload - _ENVELOPE, 0)

    async def put(self, response_id: str, entry: StoredResponse) -> None:
        payload = entry.model_dump_json().encode()
        if len(payload) > self.room():
            raise GatewayError(
                TOO_LARGE,
                f"This response and its input ({len(payload)} bytes) are more than the response store keeps "
                f"({self.room()} bytes); send store: false and pass the conversation as input.",
            )
        nonce = os.urandom(_NONCE)
        sealed = _SEALED + nonce + self._cipher().encrypt(nonce, payload, response_id.encode())
        kv = await self._bucket()
        await self._io(kv.put(response_id, sealed))

    async def get(self, response_id: str, user: str | None) -> StoredResponse:
        """The entry, if ``user`` may read it (None: an admin); 404 otherwise."""
        if not _valid_id(response_id):
            raise _missing(response_id)
        kv = await self._bucket()
        try:
            entry = await self._io(kv.get(response_id))
        except (KeyNotFoundError, KeyDeletedError):
            raise _missing(response_id) from None
        if entry.value is None:
            raise _missing(response_id)
        value = entry.value
        if value.startswith(_SEALED):
            nonce, sealed = value[len(_SEALED) : len(_SEALED) + _NONCE], value[len(_SEALED) + _NONCE :]
            try:
                value = self._cipher().decrypt(nonce, sealed, response_id.encode())
            except InvalidTag:  # another key (a Vault that was reset) or an altered entry
                log.error("stored response %s does not open with this deployment's responses key", response_id)
                raise _missing(response_id) from None
        try:
            stored = StoredResponse.model_validate_json(value)
        except ValidationError:
            log.error("stored response %s is unreadable", response_id)
            raise _missing(response_id) from None
        if user is not None and stored.owner != user:
            raise _missing(response_id)
        return stored

    async def delete(self, response_id: str, user: str | None) -> None:
        await self.get(response_id, user)
        kv = await self._bucket()
        await self._io(kv.delete(response_id))

    async def previous(self, response_id: str, user: str | None) -> StoredResponse:
        """The response a new turn continues: a 400 naming ``previous_response_id`` if there is
        none this user may read."""
        try:
            return await self.get(response_id, user)
        except GatewayError as exc:
            if exc.status != 404:
                raise
            raise GatewayError(
                INVALID_REQUEST, f"Previous response with id '{response_id}' not found.", param="previous_response_id"
            ) from None

    async def conversation(
        self, last: StoredResponse, response_id: str, user: str | None
    ) -> tuple[list[str], list[dict[str, Any]]]:
        """The chain a new turn continues (ending with ``response_id``, whose entry is
        ``last``) and its items in order: each turn's input, then its output."""
        earlier = await asyncio.gather(*(self.get(rid, user) for rid in last.chain), return_exceptions=True)
        items: list[dict[str, Any]] = []
        for rid, turn in zip([*last.chain, response_id], [*earlier, last], strict=True):
            if isinstance(turn, BaseException):
                if isinstance(turn, GatewayError) and turn.status == 404:
                    raise GatewayError(
                        INVALID_REQUEST,
                        f"Response '{rid}', which '{response_id}' continues, was deleted or has expired.",
                        param="previous_response_id",
                    )
                raise turn
            items.extend(turn.input)
            items.extend(turn.response.get("output") or [])
        return [*last.chain, response_id], items


def _valid_id(response_id: str) -> bool:
    return (
        0 < len(response_id) <= 128
        and response_id.isascii()
        and response_id.replace("_", "").replace("-", "").isalnum()
    )


def _missing(response_id: str) -> GatewayError:
    return GatewayError(NOT_FOUND, f"Response with id '{response_id}' not found.", param="response_id")
