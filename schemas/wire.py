"""The Confluent wire format: magic byte 0, a 4-byte big-endian schema id, the Avro body.

Using the standard framing means any Kafka tool that speaks Schema Registry can read Riverbed
topics, and every record says which schema wrote it.
"""

from __future__ import annotations

import io
import struct
from typing import Any

from fastavro import schemaless_reader, schemaless_writer
from fastavro._read_common import SchemaResolutionError

from riverbed.core.errors import Invalid

MAGIC = 0
_HEADER = struct.Struct(">bI")


class WireFormatError(Invalid):
    """The bytes are not a Confluent-framed Avro record."""


def encode(schema_id: int, parsed_schema: Any, datum: dict[str, Any]) -> bytes:
    """Frame ``datum`` written with ``parsed_schema`` (a fastavro parsed schema)."""
    buffer = io.BytesIO()
    buffer.write(_HEADER.pack(MAGIC, schema_id))
    schemaless_writer(buffer, parsed_schema, datum)
    return buffer.getvalue()


def split(message: bytes) -> tuple[int, memoryview]:
    """Return ``(schema_id, avro_body)``; raise :class:`WireFormatError` on a bad header."""
    if len(message) < _HEADER.size:
        raise WireFormatError(f"record of {len(message)} bytes is shorter than the 5-byte header")
    magic, schema_id = _HEADER.unpack_from(message)
    if magic != MAGIC:
        raise WireFormatError(f"magic byte is {magic}, expected {MAGIC}")
    return schema_id, memoryview(message)[_HEADER.size :]


def decode_body(body: bytes | memoryview, writer_schema: Any, reader_schema: Any = None) -> Any:
    """Decode an Avro body, resolving writer -> reader schema when a reader is given."""
    stream = io.BytesIO(body)
    try:
        return schemaless_reader(stream, writer_schema, reader_schema)
    except (
        EOFError,
        ValueError,
        IndexError,
        KeyError,
        TypeError,
        UnicodeDecodeError,
        SchemaResolutionError,
    ) as exc:
        raise WireFormatError(f"Avro body does not match its schema: {exc}") from exc
