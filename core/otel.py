"""Event fields <-> OpenTelemetry log record attributes: the one table the collector's OTLP receiver reads
(OTel -> event, ``collector/api/otlp_mapping.py``) and the agent's OTLP exporter writes (event -> OTel,
``agent/exporters/otlp.py``). Pure data: no protobuf here.

===========================  =================================================================================
event field                  OpenTelemetry
===========================  =================================================================================
``created_at``               ``time_unix_nano``, else ``observed_time_unix_nano`` (neither: the record is
                             rejected)
``action``                   the record's ``event_name``, else the ``event.name`` attribute, else its body
                             when that is a string of at most 256 characters
``method``                   ``http.request.method`` (older: ``http.method``)
``path``                     ``url.path`` + ``?`` + ``url.query``, else the path and query of ``url.full``
                             (older: ``http.target``, ``http.url``)
``status_code``              ``http.response.status_code`` (older: ``http.status_code``)
``client_ip``                ``client.address`` (older: ``http.client_ip``); not an IP address:
                             ``metadata.client``
``user_agent``               ``user_agent.original`` (older: ``http.user_agent``)
``actor_id``                 ``enduser.id``, else ``user.id``
``actor_name``               ``user.name``
``actor_email``              ``user.email``
``outcome`` ...              ``sidetrail.outcome``, ``sidetrail.actor_type``, ``sidetrail.resource_type``,
                             ``sidetrail.resource_id``, ``sidetrail.request_id`` (no convention exists)
``source``                   resource ``service.name`` -> ``name``, ``host.name`` -> ``host``, the scope's
                             name -> ``scope``, other resource attributes -> ``resource``; a record whose
                             ``sidetrail.source`` attribute is a JSON object (as text or a map: what agents
                             send) has that as its source
``id``                       ``sidetrail.event_id`` when set (agents send their own deterministic ids), else
                             a hash of the record, its resource and its scope
``metadata``                 every other attribute under its own key; ``trace_id`` and ``span_id`` (hex),
                             ``severity`` (the severity text), ``body`` (when it is not the action)
===========================  =================================================================================

The first name of each attribute is the one an agent writes; the others are read too.
"""

from __future__ import annotations

from typing import Final

EVENT_ATTRIBUTES: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    ("method", ("http.request.method", "http.method")),
    ("status_code", ("http.response.status_code", "http.status_code")),
    ("client_ip", ("client.address", "http.client_ip")),
    ("user_agent", ("user_agent.original", "http.user_agent")),
    ("actor_id", ("enduser.id", "user.id")),
    ("actor_name", ("user.name",)),
    ("actor_email", ("user.email",)),
    ("outcome", ("sidetrail.outcome",)),
    ("actor_type", ("sidetrail.actor_type",)),
    ("resource_type", ("sidetrail.resource_type",)),
    ("resource_id", ("sidetrail.resource_id",)),
    ("request_id", ("sidetrail.request_id",)),
)
"""Event field -> the attributes that carry it, preferred first (``path`` and ``action`` are special)."""

URL_PATH: Final = "url.path"
URL_QUERY: Final = "url.query"
URL_FULL: Final = "url.full"
OLD_PATH_ATTRIBUTES: Final = ("http.target", "http.url")
EVENT_NAME: Final = "event.name"
EVENT_ID: Final = "sidetrail.event_id"
"""A record carrying a UUID here (what agents send: the line's own deterministic id) keeps it as its id."""
SOURCE: Final = "sidetrail.source"
"""The agent's source stamp (``core/source.py``) as JSON text (or a map): the collector stores it as ``source``."""
SERVICE_NAME: Final = "service.name"
HOST_NAME: Final = "host.name"

MAPPED: Final = frozenset(
    {name for _, names in EVENT_ATTRIBUTES for name in names}
    | {URL_PATH, URL_QUERY, URL_FULL, *OLD_PATH_ATTRIBUTES, EVENT_NAME, EVENT_ID, SOURCE}
)
"""Attributes that become event fields (or the source) and so are not repeated in ``metadata``."""

SCOPE_NAME: Final = "sidetrail.agent"
"""The instrumentation scope of the records an agent sends."""
