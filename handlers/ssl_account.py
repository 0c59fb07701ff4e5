"""The fleet's one ACME account at a directory, ready to order with.

``SslAccount(book, sealer, connect, directory_url, …)`` consumes the ``AcmeAccount``
aggregate (through the ``CertificateBook``), the key sealer and ``connect`` (which makes an
``AcmeCa`` for a directory from a clear account key and the account URL, if known); it emits
one registered ``AcmeCa`` per process (``client()``), and records on the way:

- ``AcmeAccount.KeyCreated`` with the new key sealed, *before* the CA hears of it: processes
  that race to create the account save one key (the loser's save conflicts and it takes the
  winner's), so the fleet never holds two accounts;
- ``AcmeAccount.Registered`` with the URL the CA gave. Registering is idempotent per key at
  the CA (``onlyReturnExisting`` first), so a crash between the two costs nothing.

The clear key lives only in the client it is handed to; it is never logged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from domain.acme_account import AcmeAccount
from handlers import x509_tools
from handlers.ssl_ports import AcmeCa, CertificateBook, KeySealer


class RegisteringCa(AcmeCa, Protocol):
    """An ``AcmeCa`` that can also register its key (``AcmeClient``)."""

    async def register(self, contact: Sequence[str] = ()) -> str: ...

    def close(self) -> None: ...


Connect = Callable[[str, str, str | None], RegisteringCa]  # (directory, key PEM, account URL)


class SslAccount:
    """The account of ``directory_url``; ``contact`` the addresses the CA may mail."""

    def __init__(
        self,
        book: CertificateBook,
        sealer: KeySealer,
        connect: Connect,
        directory_url: str,
        *,
        clock: Callable[[], datetime],
        contact: Sequence[str] = (),
        key_kind: x509_tools.KeyKind = "ec-p256",
    ) -> None:
        self._book = book
        self._sealer = sealer
        self._connect = connect
        self.directory_url = directory_url
        self._clock = clock
        self._contact = [f"mailto:{address}" for address in contact]
        self._key_kind = key_kind
        self._client: RegisteringCa | None = None
        self._lock = asyncio.Lock()

    async def client(self) -> AcmeCa:
        """The registered client (made, and the account recorded, on first use)."""
        async with self._lock:
            if self._client is None:
                self._client = await self._registered()
            return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def _registered(self) -> RegisteringCa:
        account = await asyncio.to_thread(self._book.account, self.directory_url)
        if account is None:
            account = await asyncio.to_thread(self._create)
        client = self._connect(
            self.directory_url, self._sealer.unseal(account.key_sealed), account.account_url
        )
        if account.registered and account.contact == self._contact:
            return client
        try:
            url = await client.register(self._contact)
            now = self._clock()

            def record(held: AcmeAccount | None) -> AcmeAccount | None:
                if held is not None:
                    held.register(now, url, self._contact)
                return held

            await asyncio.to_thread(self._book.update_account, self.directory_url, record)
        except BaseException:
            client.close()
            raise
        return client

    def _create(self) -> AcmeAccount:
        key_sealed = self._sealer.seal(x509_tools.new_key(self._key_kind))
        now = self._clock()

        def decide(held: AcmeAccount | None) -> AcmeAccount | None:
            if held is not None:
                return None  # another process was first: its key is the account's
            return AcmeAccount.create(self.directory_url, key_sealed, now)

        return self._book.update_account(self.directory_url, decide)
