"""API dialects: the request and response shapes the collector serves over its one query layer.

``base.Dialect`` says what a dialect supplies; ``native/`` is sidetrail's own API (``/v1/...``, reference
document 003), the first dialect; ``cstar/`` is document 000, ``auditlogs/`` 001, ``v2audit/`` 002 and
``hookstream/`` 004. A new vendor's shape is a sibling package with
its parameter translation, its row presenter, its error body and its route table, listed in
``registry.DIALECTS``; ``collector.api.mount`` turns route tables into routes and ``collector.app`` mounts
every registered dialect.
"""
