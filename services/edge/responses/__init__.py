"""The Responses API (``/v1/responses``): typed items, translation to and from chat
completions, and the store that keeps responses for ``previous_response_id``."""
