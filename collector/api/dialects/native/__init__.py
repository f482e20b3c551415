"""The native dialect: sidetrail's own API. ``params`` translates its request parameters (and the aliases
borrowed from other audit-log APIs) into the query layer's model; ``routes`` is its route table."""
