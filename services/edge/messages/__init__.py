"""Anthropic's Messages API for models of other providers: typed blocks, and translation to
and from chat completions (a request for Anthropic itself is passed through instead,
services/edge/providers/anthropic_passthrough.py)."""
