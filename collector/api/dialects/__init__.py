"""API dialects: the request and response shapes the collector serves over its one query layer.

``base.Dialect`` says what a dialect supplies; ``native/`` is sidetrail's own API (``/v1/...``), the
first dialect. A new vendor's shape is a sibling package with its parameter translation, its row
presenter, its error body and its route table; ``collector.api.mount`` lists the dialects and mounts them.
"""
