"""The sidetrail agent: tails logs beside an app and ships one audit event per kept line.

Follow a log line to a batch in five files:

1. ``receivers/file.py`` - :class:`FileReceiver` reads complete lines of a matched file into a
   :class:`~agent.stages.Chunk` (``receivers/http.py`` spools events apps POST and tails the spool).
2. ``processors/line.py`` - :class:`LineProcessor.process_chunk` parses each line (``parse.py``), lets the
   rules decide (``rules.py``), builds the event (``event.py``), redacts it (``redact.py``), encodes it.
3. ``processors/batch.py`` - :class:`BatchProcessor` packs the encoded events and the file's
   :class:`~agent.stages.Position` into a :class:`~agent.stages.Batch` on a bounded queue.
4. ``exporters/http.py`` - :class:`HttpExporter` posts each batch to the collector's ``/v1/ingest``.
5. ``checkpointer.py`` - an acknowledged batch's positions become saved offsets (``checkpoint.py``).

``stages.py`` holds the types passed between them, ``registry.py`` which component serves each config
``type``, ``pipeline.py`` the wiring and start/stop order, ``__main__.py`` the CLI (``run``, ``check``,
``explain``; the latter two go through the same ``process_chunk``).
"""
