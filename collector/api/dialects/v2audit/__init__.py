"""The ``v2audit`` dialect (reference document 002): ``GET /api/v2/audit`` answering
``{"data": {"logs": [...]}}``, paged by ``skip``/``limit``, sorted by ``sort_by``, filtered by per-column
``eq:``/``~eq:``/``neq:`` predicates, ``before``/``after`` and ``created_at``, long-polling with
``Prefer: wait=N``. ``params`` translates the request, ``present`` draws a log and the error body,
``routes`` is its route table and handler."""
