"""``CertificateInspector``: checks a customer's certificate before it is recorded.

Consumes the PEM texts of a ``PUT …/ssl/{role}/custom``, the names the role's certificate
must cover and the time; emits the certificate's facts and the files Hestia takes (the leaf
alone, the built chain issuer first without the root), or ``InvalidInput`` with the reason
(``handlers.x509_tools.check_custom``: it does not parse, the key is encrypted or not the
certificate's, a name is not covered, it is not valid now, its chain leads to no trusted
root). The roots are the system's bundle plus ``HOSTWRIGHT_TRUSTED_ROOTS``. No reason quotes
the PEM it was given.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from domain.errors import InvalidInput
from domain.ssl_requests import CustomUpload
from domain.ssl_types import CertificateFacts
from handlers.x509_tools import CertificateRefused, CheckedCustom, check_custom


class CertificateInspector:
    def __init__(self, roots_pem: str) -> None:
        self._roots_pem = roots_pem

    @classmethod
    def with_system_roots(cls, trusted_roots: str | None = None) -> CertificateInspector:
        """The system's roots (OpenSSL's default bundle) and the extra roots file, if any."""
        texts = []
        cafile = ssl.get_default_verify_paths().cafile
        if cafile and Path(cafile).is_file():
            texts.append(Path(cafile).read_text())
        if trusted_roots:
            texts.append(Path(trusted_roots).read_text())
        return cls("\n".join(texts))

    def validate(
        self, upload: CustomUpload, names: Sequence[str], now: datetime
    ) -> CertificateFacts:
        return self.check(upload, names, now).facts

    def check(self, upload: CustomUpload, names: Sequence[str], now: datetime) -> CheckedCustom:
        """The facts and the files to record: the leaf alone, the chain issuer first."""
        try:
            return check_custom(
                upload.certificate,
                upload.private_key,
                upload.chain,
                names=names,
                roots_pem=self._roots_pem,
                now=now,
            )
        except CertificateRefused as refused:
            raise InvalidInput(f"the certificate is refused: {refused.reason}") from None
