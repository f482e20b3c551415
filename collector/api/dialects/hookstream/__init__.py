"""The hookstream dialect: hookstream.io's audit-log API (``GET /audit-log``, also at ``/v1/audit-log``
where its clients' base URL ends in ``/v1``).

``params`` turns its query parameters into a listing, ``shape`` draws its entries and its error body,
``routes`` is its route table. Keys may also come in the ``better-auth.session_token`` cookie.
"""
