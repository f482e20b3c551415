"""The sidetrail collector: ingest -> storage -> audit-log query API."""
