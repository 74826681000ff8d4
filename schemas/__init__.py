"""Avro schemas, the stream catalog, the wire format and the schema registry."""
