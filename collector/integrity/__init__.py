"""Tamper evidence: every stored event hash-chained per tenant, the chain heads signed into checkpoints,
and one verifier for the live store and for exported files. The exact formats: ``docs/tamper-evidence.md``.

Modules, each one concept:

- ``canonical``: the bytes an event's hash covers (RFC 8785);
- ``chain``: ``hash_p = SHA-256(hash_{p-1} || canonical(event_p))`` and the insert transactions' chain step;
- ``signing``: Ed25519 key files, public keys, key ids;
- ``checkpoints``: signed checkpoints and retention tombstones, and the bytes they sign;
- ``verify``: the verifier, fed ``(position, stored hash, event)`` rows, and its report;
- ``service``: the collector's duties (the key at start, checkpoints, verifying the stored chain);
- ``cli``: ``signing-key create|show`` and ``verify``.

Storage keeps the chain in ``collector/storage/chain.py`` (tables, statements) and the backends' inserts.
"""
