"""Hypothesis strategies for any protobuf message, made by walking its descriptor.

`messages(SomeRequest)` draws instances of the class: every field set or left unset, numbers
at their boundaries (0, -1, 2^31, 2^63-1, NaN, infinities ...) as often as in between, enums
outside their declared values too (proto3 enums are open), strings short, long, nested or
unusual, repeated fields empty, short or (scalars) very long, one member of each oneof at
most. `overrides` replaces the strategy of a whole field by its full name
(`"dukat.v1.TaskSpec.id"`; a list for a repeated field, a dict for a map): that is how a
caller steers ids, names and commands towards what the server knows.

Sizes stay reasonable: the longest string is 1 MiB of one character (cheap to make, and
rare), the "very many" repeated scalar copies one short element up to 10,000 times, and
nesting stops at `depth` messages.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

__all__ = ["Overrides", "boundary_text", "messages", "mutations"]

Overrides = Mapping[str, st.SearchStrategy[Any]]

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_UINT32 = (0, 2**32 - 1)
_UINT64 = (0, 2**64 - 1)


def _integers(low: int, high: int) -> st.SearchStrategy[int]:
    near = (0, 1, -1, 2, 255, 256, 1000, 2**31 - 1, 2**31, 2**32, 2**53, 2**62)
    edges = sorted({v for v in (*near, low, low + 1, high - 1, high) if low <= v <= high})
    return st.one_of(st.sampled_from(edges), st.integers(min_value=low, max_value=high))


_FLOAT_EDGES = (0.0, -0.0, 1e-9, 0.0005, 0.001, 0.5, 1.0, 1.5, 2.0, -1.0, 1e9, 1e300, 5e-324)


def _floats(width: int) -> st.SearchStrategy[float]:
    special = st.sampled_from((*_FLOAT_EDGES, float("nan"), float("inf"), float("-inf")))
    return st.one_of(special, st.floats(width=width, allow_nan=True, allow_infinity=True))


# Strings that have broken parsers and limits before: empty, one past a round length, very
# long, nested brackets (a recursive decoder), NULs, right-to-left marks, combining
# characters, astral-plane characters (2 UTF-16 units, 4 UTF-8 bytes). The long ones are
# drawn rarely (a message has many strings, and a few MiB of them are all the same to the
# server: over its message limit).
_SMALL_SIZES = (0, 1, 199, 200, 201, 255, 256, 257, 1_000, 4_096)
_BIG_SIZES = (65_536, 1024 * 1024)
_SIZES = _SMALL_SIZES * 8 + _BIG_SIZES


def _long_texts() -> st.SearchStrategy[str]:
    return st.builds(
        lambda size, char: char * size,
        st.sampled_from(_SIZES),
        st.sampled_from("x\u00e9\U0001f600"),
    )


boundary_text = st.one_of(
    st.text(max_size=24),
    st.text(max_size=24),
    _long_texts(),
    st.sampled_from(
        (
            "",
            " ",
            "\x00",
            "a\x00b",
            "\u202e",
            "e\u0301",
            "\U0001f600",
            "../..",
            "/",
            "%s%n",
            "null",
            "[]",
            '{"a": 1}',
            "[" * 2_000 + "]" * 2_000,
            "\n" * 100,
        )
    ),
)
"""Text for any string field: short and random, or long, or one of the known troublemakers."""

_boundary_bytes = st.one_of(
    st.binary(max_size=64),
    st.builds(lambda size: b"\xab" * size, st.sampled_from(_SIZES)),
)


def _repeated(
    field: FieldDescriptor, element: st.SearchStrategy[Any]
) -> st.SearchStrategy[list[Any]]:
    """A few elements; for scalars also very many (short ones, not to make megabytes)."""
    few = st.lists(element, max_size=4)
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return few
    if field.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES):
        element = _scalar(field, short=True)
    many = st.builds(lambda item, n: [item] * n, element, st.sampled_from((100, 1_000, 10_000)))
    return st.one_of(few, few, many)


def _scalar(field: FieldDescriptor, *, short: bool = False) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind in (
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_SFIXED32,
    ):
        return _integers(*_INT32)
    if kind in (
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_SFIXED64,
    ):
        return _integers(*_INT64)
    if kind in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return _integers(*_UINT32)
    if kind in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return _integers(*_UINT64)
    if kind == FieldDescriptor.TYPE_DOUBLE:
        return _floats(64)
    if kind == FieldDescriptor.TYPE_FLOAT:
        return _floats(32)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_STRING:
        return st.text(max_size=8) if short else boundary_text
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=8) if short else _boundary_bytes
    if kind == FieldDescriptor.TYPE_ENUM:
        declared = [value.number for value in field.enum_type.values]
        return st.one_of(st.sampled_from(declared), st.sampled_from((-1, 99, 2**31 - 1)))
    raise TypeError(f"no strategy for field {field.full_name} of type {kind}")


def _is_map(field: FieldDescriptor) -> bool:
    return field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry


def _oneofs(descriptor: Descriptor) -> list[Any]:
    """The message's oneofs, but for the one a proto3 `optional` field makes of itself."""
    return [
        oneof
        for oneof in descriptor.oneofs
        if not (len(oneof.fields) == 1 and oneof.name.startswith("_"))
    ]


class _Walker:
    """Builds (and caches) a strategy per message type and remaining depth."""

    def __init__(self, overrides: Overrides) -> None:
        self.overrides = dict(overrides)
        self._made: dict[tuple[str, int], st.SearchStrategy[Message]] = {}

    def value(self, field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any] | None:
        """The strategy of one value of `field` (an element, for a repeated field)."""
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if depth <= 0:
                return None
            return self.message(field.message_type, depth - 1)
        return _scalar(field)

    def field(self, field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any] | None:
        """The strategy of what goes into `field`: a value, a list, or a dict for a map."""
        if field.full_name in self.overrides:
            return self.overrides[field.full_name]
        if _is_map(field):
            entry = field.message_type
            key = self.value(entry.fields_by_name["key"], depth)
            value = self.value(entry.fields_by_name["value"], depth)
            if key is None or value is None:
                return None
            return st.dictionaries(key, value, max_size=4)
        element = self.value(field, depth)
        if element is None or not field.is_repeated:
            return element
        return _repeated(field, element)

    def message(self, descriptor: Descriptor, depth: int) -> st.SearchStrategy[Message]:
        key = (descriptor.full_name, depth)
        if key not in self._made:
            self._made[key] = self._make(descriptor, depth)
        return self._made[key]

    def _make(self, descriptor: Descriptor, depth: int) -> st.SearchStrategy[Message]:
        oneofs = _oneofs(descriptor)
        # One draw per oneof: none of its members, or one.
        choices = []
        for oneof in oneofs:
            members = [(f.name, self.field(f, depth)) for f in oneof.fields]
            choices.append(
                st.one_of(
                    st.just({}),
                    *(
                        st.builds(lambda value, name=name: {name: value}, strategy)
                        for name, strategy in members
                        if strategy is not None
                    ),
                )
            )
        in_oneof = {f.name for oneof in oneofs for f in oneof.fields}
        plain = {
            f.name: strategy
            for f in descriptor.fields
            if f.name not in in_oneof and (strategy := self.field(f, depth)) is not None
        }
        fields = st.fixed_dictionaries({}, optional=plain)
        cls = message_factory.GetMessageClass(descriptor)
        return st.builds(_assemble(cls), fields, st.tuples(*choices))


def _assemble(
    cls: type[Message],
) -> Callable[[dict[str, Any], tuple[dict[str, Any], ...]], Message]:
    def assemble(fields: dict[str, Any], chosen: tuple[dict[str, Any], ...]) -> Message:
        message = cls()
        for part in (fields, *chosen):
            for name, value in part.items():
                _set(message, name, value)
        return message

    return assemble


def _set(message: Message, name: str, value: Any) -> None:
    field = message.DESCRIPTOR.fields_by_name[name]
    if _is_map(field):
        target = getattr(message, name)
        for key, item in value.items():
            if isinstance(item, Message):
                target[key].CopyFrom(item)
            else:
                target[key] = item
    elif field.is_repeated:
        getattr(message, name).extend(value)
    elif isinstance(value, Message):
        getattr(message, name).CopyFrom(value)
    else:
        setattr(message, name, value)


def messages(
    cls: type[Message], *, overrides: Overrides | None = None, depth: int = 6
) -> st.SearchStrategy[Message]:
    """Instances of the protobuf message class `cls` (see the module docstring)."""
    return _Walker(overrides or {}).message(cls.DESCRIPTOR, depth)


def mutations(
    valid: st.SearchStrategy[Message],
    *,
    overrides: Overrides | None = None,
    depth: int = 6,
) -> st.SearchStrategy[Message]:
    """A `valid` message with one or two fields, anywhere in it, replaced by drawn ones.

    A request with every field drawn is mostly refused for its first bad field; one that is
    valid but for a field or two gets that field's value to the code that uses it.
    """
    walker = _Walker(overrides or {})

    @st.composite
    def mutate(draw: st.DrawFn) -> Message:
        message = draw(valid)
        for _ in range(draw(st.integers(1, 2))):
            target = draw(st.sampled_from(list(_parts(message))))
            donor = draw(walker.message(target.DESCRIPTOR, depth))
            fields = [fd.name for fd, _ in donor.ListFields()]
            if not fields:
                continue
            name = draw(st.sampled_from(fields))
            part = type(donor)()
            part.MergeFrom(donor)
            for other in fields:
                if other != name:
                    part.ClearField(other)
            target.ClearField(name)
            target.MergeFrom(part)
        return message

    return mutate()


def _parts(message: Message) -> list[Message]:
    """`message` and every message inside it (map entries aside)."""
    found = [message]
    for fd, value in message.ListFields():
        if fd.type != FieldDescriptor.TYPE_MESSAGE or _is_map(fd):
            continue
        for item in value if fd.is_repeated else (value,):
            found.extend(_parts(item))
    return found
