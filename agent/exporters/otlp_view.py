"""A view of ``ExportLogsServiceRequest`` whose log records are already serialized: :data:`RequestView`;
and a view of ``LogRecord`` whose values are set without a lookup by name: :data:`RecordView`.

``opentelemetry-proto``'s own messages, copied from its descriptors, with one change: ``ScopeLogs``'s
``log_records`` is ``repeated bytes`` instead of ``repeated LogRecord`` (and the request and
``ResourceLogs`` refer to these copies). Protobuf documents an embedded message and ``bytes`` holding
its encoding as the same on the wire, so protobuf (upb) serializes this view to the bytes of the real
``ExportLogsServiceRequest`` holding those records - without parsing every serialized record back into
a message only to serialize it again. Nothing here writes protobuf's wire format: protobuf does, from
the copied schema (``tests/agent/test_otlp_encoding.py`` holds the view to the real message's bytes).
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

_PACKAGE = "sidetrail.agent.otlp_view"


def _copied(
    name: str, package: str, messages: tuple[Any, ...], dependency: list[str] | None = None
) -> tuple[descriptor_pb2.FileDescriptorProto, dict[str, str]]:
    """A file descriptor ``name`` in ``package`` holding copies of ``messages``' descriptors, their
    references to each other pointed at the copies; and the map of those full names (old to new)."""
    renamed = {f".{message.DESCRIPTOR.full_name}": f".{package}.{message.DESCRIPTOR.name}" for message in messages}
    file = descriptor_pb2.FileDescriptorProto(name=name, package=package, syntax="proto3", dependency=dependency)
    for message in messages:
        proto = file.message_type.add()
        message.DESCRIPTOR.CopyToProto(proto)
        for field in proto.field:
            if field.type_name in renamed:
                field.type_name = renamed[field.type_name]
    return file, renamed


def _view_classes() -> tuple[Any, Any, Any]:
    """The request, ``ResourceLogs`` and ``ScopeLogs`` copied into ``_PACKAGE`` (see the module docstring)."""
    copied = (ExportLogsServiceRequest, ResourceLogs, ScopeLogs)
    dependency = [Resource.DESCRIPTOR.file.name, InstrumentationScope.DESCRIPTOR.file.name]
    file, renamed = _copied("sidetrail/agent/otlp_view.proto", _PACKAGE, copied, dependency)
    (records,) = (field for field in file.message_type[2].field if field.name == "log_records")
    records.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
    records.ClearField("type_name")
    pool = descriptor_pool.Default()
    pool.Add(file)
    return tuple(  # type: ignore[return-value]
        message_factory.GetMessageClass(pool.FindMessageTypeByName(renamed[f".{m.DESCRIPTOR.full_name}"][1:]))
        for m in copied
    )


RequestView, ResourceLogsView, ScopeLogsView = _view_classes()


# The fields the encoder sets (the others it never sets, so leaving them out changes no byte, and spares
# the encoder a look at each: callgrind, 8,000 bench events, 40,789 -> 39,807 instructions an event, the
# AnyValue members other than these four the most of it).
_KEPT = {
    "LogRecord": ("time_unix_nano", "severity_number", "body", "attributes", "event_name"),
    "KeyValue": ("key", "value"),
    "AnyValue": ("string_value", "int_value"),  # what the encoder's shapes send values as
}


def _record_view() -> Any:
    """``LogRecord`` with every ``AnyValue`` (attribute values, the body) made of repeated scalars.

    ``AnyValue``'s scalar fields lose their oneof and become ``repeated`` (unpacked: a packed integer would
    be another encoding). A repeated scalar holding one element is encoded as that field set alone, so the
    record serializes to the real ``LogRecord``'s bytes; what it buys is the setter: ``values[0] = x`` on
    a repeated container, against ``value.string_value = x`` looking the field up by name each time
    (callgrind, 17 attributes: 1,040 -> 850 instructions an attribute). Only the fields the encoder sets
    are kept (``_KEPT``); records holding arrays or maps are built as real ``LogRecord``s.
    """
    package = f"{_PACKAGE}.record"
    file, _ = _copied("sidetrail/agent/otlp_record_view.proto", package, (LogRecord, KeyValue, AnyValue))
    for proto in file.message_type:
        kept = [field for field in proto.field if field.name in _KEPT[proto.name]]
        del proto.field[:]
        proto.field.extend(kept)
    any_value = file.message_type[2]
    any_value.ClearField("oneof_decl")
    for field in any_value.field:
        field.ClearField("oneof_index")
        field.label = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
        field.options.packed = False
    pool = descriptor_pool.Default()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.LogRecord"))


RecordView = _record_view()
