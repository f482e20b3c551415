"""API dialects: the request and response shapes the collector serves over its one query layer.

``base.Dialect`` says what a dialect supplies; ``native/`` is sidetrail's own API (``/v1/...``), the
first dialect; ``auditlogs/`` is reference document 001. A new vendor's shape is a sibling package with
its parameter translation, its row presenter, its error body and its route table, listed in
``registry.DIALECTS``; ``collector.api.mount`` turns route tables into routes and ``collector.app`` mounts
every registered dialect.
"""
