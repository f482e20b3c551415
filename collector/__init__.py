"""The sidetrail collector: ingest -> storage -> audit-log query API.

From a request to a query row, five files: ``app.py`` builds the aiohttp app and mounts each API dialect
(``api/mount.py``) from its route table (``api/dialects/native/routes.py``); the router authenticates the
caller with the route's scope (``api/auth.py``) and calls the handler (``api/query.py``), which has the
dialect turn its parameters into a :class:`~collector.api.paging.Listing` (``api/dialects/native/params.py``);
the query layer (``api/paging.py``) runs it as an ``EventQuery`` on the storage backend (``storage/``)
and the dialect presents the rows. Ingest is the reverse path: ``api/ingest.py`` validates with
``core.event`` and ``storage/`` commits in groups.
"""
