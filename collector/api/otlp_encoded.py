"""``ExportLogsServiceRequest`` with every ``attributes`` field left encoded: a second reading of a request
body that hands over each attribute as the bytes of its ``KeyValue``, for ``collector.api.otlp_mapping``'s
cache of decoded attributes.

The schema is derived at import from opentelemetry-proto's own descriptors (nothing hand-written): the same
files, with the ``attributes`` fields of ``LogRecord`` and ``Resource`` turned from ``repeated KeyValue``
into ``repeated bytes``. Protobuf's wire format gives an embedded message and ``bytes`` the same encoding
(wire type 2, the length, the message's bytes), so upb decodes any valid request with either schema, and each
attribute's bytes then decode as a ``KeyValue`` (``common_pb2.KeyValue.FromString``).

Why: a record's attributes as bytes are one C-level slice of a scalar container; as messages they are a
Python wrapper each, serialized again to be found in the cache. Measured on the agent's records (11
attributes; in-process, least of 7): 2.5 us a record for the slice against 6.7 for the wrappers plus about 3
to serialize them.

Only the receiver's reading uses it: a body is first decoded with the real schema (which checks all of it,
so a body either schema refuses is refused as before), and ids hash the real messages' encoding.
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

_ENCODED = {"LogRecord": "attributes", "Resource": "attributes"}
"""Message name -> its field read as ``repeated bytes`` (each a serialized ``KeyValue``)."""


def _file(module: ModuleType) -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto()
    module.DESCRIPTOR.CopyToProto(proto)
    for message in proto.message_type:
        name = _ENCODED.get(message.name)
        if name is None:
            continue
        (field,) = (field for field in message.field if field.name == name)
        assert field.type_name == ".opentelemetry.proto.common.v1.KeyValue", field  # what the wire reading needs
        field.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
        field.ClearField("type_name")
    return proto


def _derive() -> Any:
    pool = descriptor_pool.DescriptorPool()  # its own pool: the names are opentelemetry-proto's own
    for module in (common_pb2, resource_pb2, logs_pb2, logs_service_pb2):  # dependencies first
        pool.Add(_file(module))
    name = logs_service_pb2.ExportLogsServiceRequest.DESCRIPTOR.full_name
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(name))


EncodedAttributesRequest: Any = _derive()
"""``ExportLogsServiceRequest`` whose ``LogRecord.attributes`` and ``Resource.attributes`` are ``bytes``."""
