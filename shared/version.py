"""Switchyard's version, as every service reports it (/ai/status, /metrics, the OpenAPI page)."""

from __future__ import annotations

VERSION = "0.1.0"
