"""The collector's HTTP API, declared as data.

Each API shape is a *dialect* (``dialects/``): a route table of :class:`~collector.api.routes.Route`
entries, a parameter translation into the shared query layer (``paging.Listing``), a row presenter and
an error body. ``mount.py`` turns a table into aiohttp routes (authenticating with each route's scope)
and ``openapi.py`` turns the same table into its OpenAPI 3.1 document. Handlers (``ingest``, ``query``,
``key_routes``, ``health``) raise :class:`~collector.api.errors.ApiError`; ``errors.py``'s middleware
answers every failure in the matched dialect's error body. Keys, tenancy (``auth``), rate limits
(``limits``) and the query layer (``paging``, ``filters``, ``cursor``) are shared by every dialect.
"""
