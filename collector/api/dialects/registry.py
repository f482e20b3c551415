"""The dialect registry: every API shape the collector can serve, by the name config and URLs use
(``listeners[].api``, ``/compat/<name>/``). The first entry is the main listener's own API.

It lives beside the package rather than in its ``__init__``: the query layer imports ``dialects.base``,
and a package ``__init__`` importing every dialect (whose route tables import the query layer) would
make that import circular.
"""

from __future__ import annotations

from types import MappingProxyType

from collector.api.dialects.auditlogs.routes import AUDITLOGS
from collector.api.dialects.base import Dialect
from collector.api.dialects.cstar.routes import CSTAR
from collector.api.dialects.hookstream.routes import HOOKSTREAM
from collector.api.dialects.native.routes import NATIVE
from collector.api.dialects.v2audit.routes import V2AUDIT

DIALECTS: MappingProxyType[str, Dialect] = MappingProxyType(
    {dialect.name: dialect for dialect in (NATIVE, CSTAR, AUDITLOGS, V2AUDIT, HOOKSTREAM)}
)
