"""Dialect ``auditlogs`` (reference document 001): ``GET /v1/audit_logs`` and ``/v1/audit_logs/{audit_log_id}``.

``items`` shows a stored event as an ``AuditLog`` (and owns the field mapping), ``params`` translates the
list's query parameters, ``routes`` holds the handlers, the error body and the route table.
"""
