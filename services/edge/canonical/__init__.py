"""The typed conversation every translating adapter reads (see model.py)."""
