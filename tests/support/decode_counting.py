"""Which stored rows replay decodes: ``decoded_rows(monkeypatch)`` returns a list that every
``EventDecoder.decode_row`` call in this process appends its row to (a forked worker's calls
stay in the worker)."""

from __future__ import annotations

import pytest

from ops.store.event_decoding import EventDecoder
from ops.store.log_rows import StoredRow


def decoded_rows(monkeypatch: pytest.MonkeyPatch) -> list[StoredRow]:
    decoded: list[StoredRow] = []
    decode = EventDecoder.decode_row

    def counting(self: EventDecoder, row: StoredRow) -> object:
        decoded.append(row)
        return decode(self, row)

    monkeypatch.setattr(EventDecoder, "decode_row", counting)
    return decoded
