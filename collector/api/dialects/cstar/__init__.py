"""The cstar dialect: cstar.help's audit-log API (``GET /api/v1/teams/{teamId}/audit-log``).

``params`` turns its query parameters into a listing, ``shape`` draws its entries and its error body,
``routes`` is its route table. The team in the path is the tenant, and must be the API key's.
"""
