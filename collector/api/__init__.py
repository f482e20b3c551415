"""HTTP routes of the collector: ingest, query, health, with one error envelope and one auth check."""
