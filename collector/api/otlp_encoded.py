"""``ExportLogsServiceRequest`` with every ``attributes`` field and each record's ``body`` left encoded: the
receiver's one reading of a request body, which hands over each attribute as the bytes of its ``KeyValue``
and a record's body as the bytes of its ``AnyValue``, for ``collector.api.otlp_mapping``'s caches of
decoded values.

The schemas are derived at import from opentelemetry-proto's own descriptors (nothing hand-written): the same
files, with ``LogRecord.attributes`` and ``Resource.attributes`` (``repeated KeyValue``), ``LogRecord.body``
(``AnyValue``) turned into ``bytes``. Protobuf's wire format gives an embedded
message and ``bytes`` the same encoding (wire type 2, the length, the message's bytes), so upb decodes any
valid request with either schema, and each attribute's bytes then decode as a ``KeyValue``
(``common_pb2.KeyValue.FromString``), a body's as an ``AnyValue``. The one difference: a ``body`` sent as an
empty ``AnyValue`` reads as no body, which the mapping treats alike (both map to no value).

Why: a record's attributes as bytes are one C-level slice of a scalar container; as messages they are a
Python wrapper each, serialized again to be found in the cache. Measured on the agent's records (11
attributes; in-process, least of 7): 2.5 us a record for the slice against 6.7 for the wrappers plus about 3
to serialize them.

This reading checks less than the real schema's (the bytes fields are not looked into):
``collector.api.otlp_mapping`` decodes every attribute and body it did not decode before (the same bytes,
into its caches), so a body that does not decode is still refused as a whole.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.resource.v1 import resource_pb2

__all__ = ["EncodedAttributesRequest"]

_KEY_VALUE = ".opentelemetry.proto.common.v1.KeyValue"
_ANY_VALUE = ".opentelemetry.proto.common.v1.AnyValue"
_REQUEST = {
    ("LogRecord", "attributes"): _KEY_VALUE,
    ("LogRecord", "body"): _ANY_VALUE,
    ("Resource", "attributes"): _KEY_VALUE,
}
"""(message, field) -> the message type the field holds, read as ``bytes`` (each value that message encoded).
Nothing else changes: the scope's attributes, say, are checked by this reading as by the real one."""


def _file(module: ModuleType, encoded: dict[tuple[str, str], str]) -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto()
    module.DESCRIPTOR.CopyToProto(proto)
    for message in proto.message_type:
        for field in message.field:
            holds = encoded.get((message.name, field.name))
            if holds is None:
                continue
            assert field.type_name == holds, field  # what the wire reading needs
            field.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
            field.ClearField("type_name")
    return proto


def _derive(modules: tuple[ModuleType, ...], encoded: dict[tuple[str, str], str], message: Any) -> Any:
    pool = descriptor_pool.DescriptorPool()  # its own pool: the names are opentelemetry-proto's own
    for module in modules:  # dependencies first
        pool.Add(_file(module, encoded))
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(message.DESCRIPTOR.full_name))


EncodedAttributesRequest: Any = _derive(
    (common_pb2, resource_pb2, logs_pb2, logs_service_pb2), _REQUEST, logs_service_pb2.ExportLogsServiceRequest
)
"""``ExportLogsServiceRequest`` whose ``LogRecord.attributes``, ``Resource.attributes`` and ``LogRecord.body``
are ``bytes``."""
