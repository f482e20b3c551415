"""Exporters: where batches go. ``http.py`` posts each :class:`~agent.stages.Batch` to the collector's
``POST /v1/ingest`` in order, retries until it is stored, then acknowledges it so its file positions
become checkpoints. An exporter meets :class:`~agent.stages.Exporter`; its factory is in
``agent/registry.py`` under the config's ``exporter.type``.
"""
