"""A mounted price file (``GATEWAY_PRICES_FILE``): what ``POST /ai/catalog`` takes, kept in a
file an operator manages (a ConfigMap, a file in git), read at start and again when its
content changes.

The file is JSON in the shape of :class:`shared.messages.CatalogLoad`: a ``dataset`` (a
genai-prices ``data.json`` or a ``catalog_prices.json``), ``prices``, ``allow_unpriced``,
``version``. A load puts in force the prices it changes, from the moment it is read (or its
``effective_from``), and replaces the models allowed unpriced when it names them; the same
content read again changes nothing. A file that does not parse or does not fit the catalog is
logged and left out: the prices in force stay.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from pydantic import ValidationError

from shared.messages import CatalogLoad

log = logging.getLogger("switchyard.metering.price_file")


class PriceFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: str | None = None  # the digest of the content last read, loaded or refused
        self.error = ""  # why the content last read was refused ("" when it loaded)

    def changed(self) -> CatalogLoad | None:
        """The file's load if its content changed since the last read, else None."""
        try:
            raw = self.path.read_bytes()
        except OSError as exc:
            digest = f"missing: {exc.strerror}"
            if digest != self._seen:
                self._seen, self.error = digest, f"cannot read {self.path}: {exc.strerror}"
                log.error("price file: %s", self.error)
            return None
        digest = hashlib.sha256(raw).hexdigest()
        if digest == self._seen:
            return None
        self._seen = digest
        try:
            load = CatalogLoad.model_validate_json(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "the file"
            self.error = f"{self.path} is not a price file ({where}: {first.get('msg')}); the prices in force stay"
            log.error("price file: %s", self.error)
            return None
        self.error = ""
        return load

    def refused(self, reason: str) -> None:
        """The load did not fit the catalog: say so (the same content is not tried again)."""
        self.error = f"{self.path}: {reason}; the prices in force stay"
        log.error("price file: %s", self.error)
