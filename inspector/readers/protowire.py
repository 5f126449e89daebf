"""A minimal protobuf wire-format decoder, so SavedModel files can be read without the ``protobuf`` package.

Only decoding is needed, and only of the few messages docs/formats.md §4.3 names. A :class:`Message`
splits one serialized message into its fields once (a flat scan; nested messages stay as byte slices
and are decoded only when asked for), so skipping a large field such as a ``GraphDef`` costs a slice,
not a parse.

Wire types: 0 varint, 1 fixed 64-bit, 2 length-delimited, 5 fixed 32-bit (3/4, the deprecated groups,
are rejected). A truncated or malformed buffer raises :class:`WireError` (a ``ValueError``).
"""

from __future__ import annotations

import builtins
import struct
from collections.abc import Iterator

__all__ = ["Message", "WireError", "iter_fields", "read_varint", "signed64", "split_fields"]

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5

FieldValue = int | memoryview


class WireError(ValueError):
    """The bytes are not a valid protobuf message (truncated, or an unsupported wire type)."""


def read_varint(buf: memoryview | bytes, pos: int) -> tuple[int, int]:
    """Decode one base-128 varint at ``pos``; returns ``(value, next_pos)``."""
    result = 0
    shift = 0
    end = len(buf)
    while True:
        if pos >= end:
            raise WireError("varint runs past the end of the buffer")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise WireError("varint longer than 10 bytes")


def signed64(value: int) -> int:
    """An ``int64`` field as stored (two's complement in a 64-bit varint) back to a Python int."""
    value &= 0xFFFFFFFFFFFFFFFF
    return value - (1 << 64) if value >= 1 << 63 else value


def iter_fields(buf: memoryview | bytes) -> Iterator[tuple[int, int, FieldValue]]:
    """Yield ``(field_number, wire_type, value)``; length-delimited values are memoryview slices."""
    return iter(split_fields(buf))


def split_fields(buf: memoryview | bytes) -> list[tuple[int, int, FieldValue]]:
    """Every field of a message as ``(field_number, wire_type, value)``, in order; length-delimited values
    are memoryview slices. A list, not a generator: a SavedModel of a deep model holds hundreds of
    thousands of small messages, and a generator frame per field doubled their cost."""
    view = buf if isinstance(buf, memoryview) else memoryview(buf)
    out: list[tuple[int, int, FieldValue]] = []
    pos = 0
    end = len(view)
    while pos < end:
        # Single-byte varints (field numbers < 16, short lengths) are the common case: decode inline.
        tag = view[pos]
        if tag < 0x80:
            pos += 1
        else:
            tag, pos = read_varint(view, pos)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise WireError("field number 0")
        value: FieldValue
        if wire == VARINT:
            if pos < end and view[pos] < 0x80:
                value = view[pos]
                pos += 1
            else:
                value, pos = read_varint(view, pos)
        elif wire == LENGTH:
            if pos < end and view[pos] < 0x80:
                length = view[pos]
                pos += 1
            else:
                length, pos = read_varint(view, pos)
            if pos + length > end:
                raise WireError(f"field {number} claims {length} bytes but only {end - pos} remain")
            value = view[pos:pos + length]
            pos += length
        elif wire == FIXED64:
            if pos + 8 > end:
                raise WireError("fixed64 field runs past the end of the buffer")
            value = struct.unpack_from("<Q", view, pos)[0]
            pos += 8
        elif wire == FIXED32:
            if pos + 4 > end:
                raise WireError("fixed32 field runs past the end of the buffer")
            value = struct.unpack_from("<I", view, pos)[0]
            pos += 4
        else:
            raise WireError(f"unsupported wire type {wire} (field {number})")
        out.append((number, wire, value))
    return out


class Message:
    """One decoded message: every field's raw values, in order; typed accessors decode on demand.

    Repeated fields keep all values; for singular fields the last value wins, as in protobuf.
    """

    __slots__ = ("_fields",)

    def __init__(self, buf: memoryview | bytes) -> None:
        fields: dict[int, list[FieldValue]] = {}
        for number, _, value in split_fields(buf):
            values = fields.get(number)
            if values is None:
                fields[number] = [value]
            else:
                values.append(value)
        self._fields = fields

    def has(self, number: int) -> bool:
        return number in self._fields

    def raw(self, number: int) -> list[FieldValue]:
        """All raw values of a field (ints, or memoryviews for length-delimited fields)."""
        return self._fields.get(number, [])

    def int(self, number: int, default: int = 0) -> int:
        values = self._fields.get(number)
        if not values:
            return default
        value = values[-1]
        if not isinstance(value, int):
            raise WireError(f"field {number} is length-delimited, expected a number")
        return value

    # The accessors named int, bool and bytes shadow those builtins in the class body, so the
    # annotations below them say builtins.int (and so on) for the type checker.
    def int64(self, number: builtins.int, default: builtins.int = 0) -> builtins.int:
        return signed64(self.int(number, default))

    def bool(self, number: builtins.int, default: builtins.bool = False) -> builtins.bool:
        return bool(self.int(number, int(default)))

    def bytes(self, number: builtins.int, default: builtins.bytes = b"") -> builtins.bytes:
        values = self._fields.get(number)
        if not values:
            return default
        value = values[-1]
        if isinstance(value, int):
            raise WireError(f"field {number} is a number, expected bytes")
        return bytes(value)

    def string(self, number: builtins.int, default: str = "") -> str:
        values = self._fields.get(number)
        if not values:
            return default
        return self.bytes(number).decode("utf-8")

    def message(self, number: builtins.int) -> Message:
        """A nested message (an empty one when the field is absent, as protobuf does)."""
        values = self._fields.get(number)
        if not values:
            return Message(b"")
        value = values[-1]
        if isinstance(value, int):
            raise WireError(f"field {number} is a number, expected a message")
        return Message(value)

    def messages(self, number: builtins.int) -> list[Message]:
        """A repeated message field, each element decoded."""
        out = []
        for value in self._fields.get(number, []):
            if isinstance(value, int):
                raise WireError(f"field {number} is a number, expected a message")
            out.append(Message(value))
        return out

    def references(self, number: builtins.int) -> list[tuple[str, builtins.int]]:
        """A repeated ``ObjectReference``-shaped field (``node_id = 1``, ``local_name = 2``) as
        ``(local_name, node_id)`` pairs: what ``[(m.string(2), m.int(1)) for m in messages(number)]`` gives.

        Object graphs hold one such reference per edge (tens of thousands in a deep model): the fields are
        taken straight from :func:`split_fields`, without a Message (and its dict) per edge."""
        out: list[tuple[str, builtins.int]] = []
        for value in self._fields.get(number, []):
            if isinstance(value, int):
                raise WireError(f"field {number} is a number, expected a message")
            name: builtins.bytes | memoryview = b""
            node = 0
            for field, _, item in split_fields(value):  # the last value of a field wins, as in protobuf
                if field == 1:
                    if not isinstance(item, int):
                        raise WireError("field 1 is length-delimited, expected a number")
                    node = item
                elif field == 2:
                    if isinstance(item, int):
                        raise WireError("field 2 is a number, expected bytes")
                    name = item
            out.append((bytes(name).decode("utf-8"), node))
        return out

    def strings(self, number: builtins.int) -> list[str]:
        return [bytes(v).decode("utf-8") for v in self._fields.get(number, []) if not isinstance(v, int)]

    def repeated_ints(self, number: builtins.int) -> list[builtins.int]:
        """A repeated integer field in either packed (one length-delimited run) or unpacked form."""
        out: list[builtins.int] = []
        for value in self._fields.get(number, []):
            if isinstance(value, int):
                out.append(value)
                continue
            pos = 0
            while pos < len(value):
                item, pos = read_varint(value, pos)
                out.append(item)
        return out

    def map_entries(self, number: builtins.int) -> dict[str, Message]:
        """A ``map<string, Message>`` field: entries are messages with key=1, value=2."""
        result: dict[str, Message] = {}
        for entry in self.messages(number):
            result[entry.string(1)] = entry.message(2)
        return result
