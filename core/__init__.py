"""Shared by agent and collector: the event model and config loading. Depends on nothing of ours."""

__version__ = "0.1.0"
