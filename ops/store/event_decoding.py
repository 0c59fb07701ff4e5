"""Decoding many stored events quickly, into the same domain events eventsourcing's mapper
makes: what ``hostwright replay`` reads the whole log with.

``EventDecoder`` consumes notifications and emits domain events, as
``Mapper.to_domain_event`` does, but parses the JSON with orjson rather than ``json`` with a
Python hook on every object (that parse was half of replay's read-and-decode), then turns
the ``{"_type_", "_data_"}`` objects the transcoder wrote back into their values, innermost
first as the hook would. Class topics and id converters are looked up once per class, and
a class's upcasts run as the mapper runs them. A store whose mapper enciphers or compresses
its events is decoded by the mapper itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Hashable
from datetime import datetime
from typing import Any, cast

import orjson
from eventsourcing.persistence import (
    DatetimeAsISO,
    JSONTranscoder,
    Mapper,
    MapperDeserialisationError,
    Notification,
    Transcoding,
    find_id_convertor,
)
from eventsourcing.utils import resolve_topic

from ops.store.log_rows import StoredRow

Event = Any
_SCALARS = frozenset({str, int, float, bool})
Converter = Callable[[Any], Any]


class EventDecoder:
    """Notifications to domain events, equal to what ``mapper.to_domain_event`` returns."""

    def __init__(self, mapper: Mapper[uuid.UUID]) -> None:
        self._mapper = mapper
        transcoder = mapper.transcoder
        self._fast = (
            isinstance(transcoder, JSONTranscoder)
            and mapper.cipher is None
            and mapper.compressor is None
        )
        self._names: dict[str, Transcoding] = (
            transcoder.names if isinstance(transcoder, JSONTranscoder) else {}
        )
        # each transcoding's decode, taken once; the library's own for times is its
        # ``datetime.fromisoformat`` called directly (a time is in nearly every event)
        self._revivers: dict[str, Converter] = {
            name: datetime.fromisoformat
            if type(transcoding) is DatetimeAsISO
            else transcoding.decode
            for name, transcoding in self._names.items()
        }
        self._classes: dict[str, tuple[type[Any], int]] = {}
        self._converters: dict[tuple[type[Any], type[Any]], tuple[Converter, dict[Any, Any]]] = {}
        # per converter, the ids it turned into: one object per aggregate, parsed once
        self._converted: dict[Converter, dict[Any, Any]] = {}

    def decode(self, notification: Notification) -> Event:
        return self.decode_row(
            (
                notification.id,
                notification.originator_id,
                notification.originator_version,
                notification.topic,
                notification.state,
            )
        )

    def _by_mapper(self, row: StoredRow) -> Event:
        """The row decoded by eventsourcing's own mapper, as every store read decodes it."""
        position, originator_id, originator_version, topic, stored = row
        return self._mapper.to_domain_event(
            Notification(
                id=position,
                originator_id=originator_id,
                originator_version=originator_version,
                topic=topic,
                state=stored,
            )
        )

    def decode_row(self, row: StoredRow) -> Event:
        """One stored row (``log_rows``) as its domain event; each distinct originator id is
        parsed once per decoder, and events of one aggregate share its id object."""
        _, originator_id, originator_version, topic, stored = row
        if not self._fast:
            return self._by_mapper(row)
        cls, class_version = self._class(topic)
        try:
            state: dict[str, Any] = orjson.loads(stored)
        except orjson.JSONDecodeError:
            # what orjson refuses (an integer beyond 64 bits, say) the mapper may still read
            return self._by_mapper(row)
        revivers = self._revivers
        try:
            for name, value in state.items():
                if type(value) is dict:
                    data = value.get("_data_")
                    if len(value) == 2 and "_type_" in value and type(data) in _SCALARS:
                        # a time or an id at the top: most of them, revived without a walk
                        state[name] = revivers[value["_type_"]](data)
                    else:
                        state[name] = self._revive(value)
                elif type(value) is list:
                    state[name] = self._revive(value)
        except Exception as exc:
            raise MapperDeserialisationError(
                f"Failed to deserialise state of stored event with topic "
                f"'{topic}', originator_id '{originator_id}' and "
                f"originator_version {originator_version}: {exc}"
            ) from exc
        converter, known = self._converter(cls, originator_id)
        converted = known.get(originator_id)
        if converted is None:
            converted = known[originator_id] = converter(originator_id)
        state["originator_id"] = converted
        state["originator_version"] = originator_version
        from_version = state.pop("class_version", 1)
        while from_version < class_version:
            getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(state)
            from_version += 1
        event = object.__new__(cls)
        object.__setattr__(event, "__dict__", state)
        return event

    def text_field(self, row: StoredRow, name: str) -> Any:
        """One field of a stored event that holds text or a number, without decoding the rest
        (for a reader that decides from that field whether to decode it at all); the same
        value ``decode_row(row)`` would have in that field."""
        if self._fast:
            try:
                state = orjson.loads(row[4])
            except orjson.JSONDecodeError:
                state = None
            # an older version of the event is upcast first: its field may differ
            current = self._class(row[3])[1]
            if type(state) is dict and state.get("class_version", 1) == current:
                value = state.get(name)
                if type(value) in _SCALARS:
                    return value
        return getattr(self.decode_row(row), name)

    def _revive(self, value: Any) -> Any:
        """A parsed JSON value with every transcoded object in it turned back into its
        value, innermost first (as the transcoder's hook on each object would)."""
        if type(value) is list:
            return [
                self._revive(item) if type(item) is dict or type(item) is list else item
                for item in value
            ]
        for name, item in value.items():
            if type(item) is dict or type(item) is list:
                value[name] = self._revive(item)
        if len(value) == 2 and "_type_" in value and "_data_" in value:
            return self._revivers[value["_type_"]](value["_data_"])
        return value

    def event_class(self, topic: str) -> type[Any]:
        """The class of the events stored under ``topic``, resolved once: a reader can tell
        from the stored row alone whether it wants the event, before decoding it."""
        return self._class(topic)[0]

    def _class(self, topic: str) -> tuple[type[Any], int]:
        found = self._classes.get(topic)
        if found is None:
            cls = resolve_topic(topic)
            found = self._classes[topic] = (cls, getattr(cls, "class_version", 1))
        return found

    def _converter(self, cls: type[Any], originator_id: Any) -> tuple[Converter, dict[Any, Any]]:
        """The class's id converter for ids of this kind, with the ids it converted so far."""
        kind = type(originator_id)
        found = self._converters.get((cls, kind))
        if found is None:
            converter = find_id_convertor(cast(Hashable, cls), cast(Hashable, kind))
            known = self._converted.setdefault(converter, {})
            found = self._converters[(cls, kind)] = (converter, known)
        return found
