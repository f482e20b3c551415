"""Processors: from a chunk of lines to batches of encoded events.

``line.py`` is the one per-line path (``run``, ``check`` and ``explain`` all go through it): ``parse.py``
turns a line into fields, ``rules.py`` (with ``routes.py``) drops it or decides its action and resource,
``event.py`` builds the audit event with its deterministic id, ``redact.py`` removes secrets, and the
event is encoded as JSON. ``batch.py`` packs encoded events and file positions into bounded batches.
"""
