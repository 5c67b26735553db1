"""Request bytes that do not parse: a sentinel instead of grpc's INTERNAL, and the field that breaks them.

grpc deserializes a request before any handler or interceptor code runs and answers INTERNAL when that raises.
`lenient(deserialize)` returns a `Malformed` request instead, which the server's error interceptor turns into
INVALID_ARGUMENT naming the field (`broken_field`: the first field whose bytes are truncated, not UTF-8 where a
string is declared, or of the wrong wire type).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5


@dataclass(frozen=True)
class Malformed:
    """A request whose bytes did not parse; `field` names where (dotted), `problem` says what."""

    field: str
    problem: str


def lenient(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """`deserialize`, returning Malformed instead of raising."""
    if deserialize is None:
        return None
    descriptor = getattr(getattr(deserialize, "__self__", None), "DESCRIPTOR", None)

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as exc:  # protobuf's DecodeError, or anything a parser of other bytes raises
            where = broken_field(descriptor, data) if isinstance(descriptor, Descriptor) else "request"
            return Malformed(where, f"the request is not a valid {getattr(descriptor, 'full_name', 'message')} "
                                    f"({type(exc).__name__}: {str(exc)[:200]})")

    return parse


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[pos]  # IndexError: truncated
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def broken_field(descriptor: Descriptor, data: bytes, prefix: str = "") -> str:  # noqa: C901 - see the docstring
    """The dotted name of the first field in `data` that does not parse as `descriptor` declares; the
    message itself ("request", or `prefix`) when no single field is to blame. (Its complexity is one walk over the
    wire format with a branch per wire type, kept in one function so that it reads as the format does.)"""
    pos = 0
    while pos < len(data):
        try:
            key, pos = _varint(data, pos)
        except (IndexError, ValueError):
            break
        number, wire = key >> 3, key & 7
        field = descriptor.fields_by_number.get(number)
        name = prefix + (field.name if field else f"field {number}")
        try:
            if wire == VARINT:
                _, pos = _varint(data, pos)
            elif wire in (FIXED64, FIXED32):
                pos += 8 if wire == FIXED64 else 4
            elif wire == LENGTH:
                size, pos = _varint(data, pos)
                chunk, pos = data[pos:pos + size], pos + size
                if len(chunk) < size:
                    return name
                if field is not None and field.type == FieldDescriptor.TYPE_STRING:
                    chunk.decode("utf-8")
                elif field is not None and field.type == FieldDescriptor.TYPE_MESSAGE:
                    inner = broken_field(field.message_type, chunk, name + ".")
                    if inner != name:
                        return inner
            else:
                return name
        except (IndexError, ValueError):  # UnicodeDecodeError is a ValueError
            return name
        if pos > len(data):
            return name
    return prefix.rstrip(".") or "request"
