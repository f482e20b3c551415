"""Shared by agent and collector; depends on nothing of theirs.

- ``schema.py``: the audit event, declared once - every field with its kind, limits, enum and roles. The
  validator, the field and column lists, the filterable and rule-settable sets and the JSON Schemas the API
  documents are all derived from it; its docstring says how to add a field.
- ``event.py``: validation, timestamps and deterministic ids of events (plain dicts).
- ``source.py``: the source stamp an agent puts on each event and the collector reads to detect gaps.
- ``config.py``: YAML loading into typed config, with every error's key path. ``logs.py``: JSON log lines.
  ``zstd.py``: the standard library's zstd or its backport.
"""

__version__ = "0.1.0"
