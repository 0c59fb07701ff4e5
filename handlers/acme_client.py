"""An asyncio ACME (RFC 8555) client on the ``acme`` package: one account, the calls an order
needs, and ARI (RFC 9773).

Consumes the directory URL, the account key (PEM: the caller seals and unseals it) and an
optional PEM bundle trusted for the CA's HTTPS (``HOSTWRIGHT_ACME_CA_BUNDLE``, for a private
test CA). Emits the plain values of ``handlers/acme_values.py`` and a full-chain PEM; raises
``AcmeProblem`` (the CA said no) or ``AcmeUnavailable`` (try again later).

acme is synchronous (requests) and its ``ClientNetwork`` is not thread-safe (nonces, session):
each call runs in this client's thread pool, every thread with a network of its own. Waiting
is ours (``wait_authorization``, ``wait_order``: ``asyncio.sleep`` honouring ``Retry-After``),
never acme's ``poll_*`` (``time.sleep``) or ``renewal_time()`` (naive clock, ``random``).
Resuming is by URL: ``order(url)`` picks up an order a crashed process placed.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

from acme import client, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from josepy.b64 import b64encode
from josepy.errors import DeserializationError
from josepy.interfaces import JSONDeSerializable
from josepy.jwa import ES256, ES384, ES512, RS256, JWASignature
from josepy.jwk import JWK, JWKEC, JWKRSA

from handlers.acme_messages import (
    RETRY_AFTER,
    NewOrderReplacing,
    ProblemKeepingNetwork,
    RenewalInfoExplained,
    retry_after_s,
)
from handlers.acme_values import (
    ERROR_PREFIX,
    AcmeProblem,
    AcmeUnavailable,
    Authorization,
    Challenge,
    DirectoryInfo,
    OrderState,
    RenewalWindow,
)

# the values live in acme_values.py; importing them from here, as the plan names them, works too
__all__ = [
    "AcmeClient",
    "AcmeProblem",
    "AcmeUnavailable",
    "Authorization",
    "Challenge",
    "DirectoryInfo",
    "OrderState",
    "RenewalWindow",
]
SETTLED_AUTHORIZATION = {"valid", "invalid", "deactivated", "expired", "revoked"}
WORKING_ORDER = {"pending", "processing"}
T = TypeVar("T")
S = TypeVar("S", Authorization, OrderState)


class _Empty(JSONDeSerializable):
    """``{}``: the body that tells the CA a challenge is ready (not a POST-as-GET)."""

    def to_partial_json(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_json(cls, jobj: Any) -> _Empty:
        return cls()


class AcmeClient:
    """One ACME account at one directory. ``close()`` ends its threads (when it made them)."""

    def __init__(
        self,
        directory_url: str,
        account_key_pem: str,
        *,
        account_url: str | None = None,
        ca_bundle: str | None = None,
        executor: ThreadPoolExecutor | None = None,
        timeout_s: float = 30.0,
        poll_s: float = 1.0,
        user_agent: str = "hostwright",
    ) -> None:
        self.directory_url = directory_url
        self.account_url = account_url
        self._key, self._alg = _account_key(account_key_pem)
        self._verify: bool | str = ca_bundle or True
        self._timeout_s = timeout_s
        self._poll_s = poll_s
        self._user_agent = user_agent
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(16, thread_name_prefix="acme")
        self._local = threading.local()
        self._networks: list[ProblemKeepingNetwork] = []
        self._lock = threading.Lock()
        self._directory: messages.Directory | None = None

    def close(self) -> None:
        if self._own_executor:
            self._executor.shutdown(wait=True)
        with self._lock:
            for network in self._networks:
                network.session.close()
            self._networks.clear()

    # --- the directory and the account -----------------------------------------------

    async def directory(self) -> DirectoryInfo:
        found = await self._dir()
        meta = found.meta
        return DirectoryInfo(
            url=self.directory_url,
            renewal_info=_optional(found, "renewalInfo"),
            caa_identities=tuple(meta.caa_identities or ()),
            profiles=dict(meta.profiles or {}),
        )

    async def register(self, contact: Iterable[str] = ()) -> str:
        """The account URL of this key, made when the CA does not know it yet (so calling it
        again, or from another process with the same key, is harmless)."""
        directory = await self._dir()
        uris = tuple(c if ":" in c else f"mailto:{c}" for c in contact)

        def work(net: ProblemKeepingNetwork) -> str:
            net.account = None  # newAccount is signed with the key itself, not a kid
            url = directory["newAccount"]
            existing = messages.NewRegistration(only_return_existing=True)
            try:
                return str(_post(net, directory, url, existing).headers["Location"])
            except messages.Error as problem:
                if problem.code != "accountDoesNotExist":
                    raise
            new = messages.NewRegistration(contact=uris, terms_of_service_agreed=True)
            return str(_post(net, directory, url, new).headers["Location"])

        self.account_url = await self._run(work)
        return self.account_url

    # --- orders ----------------------------------------------------------------------

    async def new_order(
        self, names: Sequence[str], *, replaces: str | None = None, profile: str | None = None
    ) -> OrderState:
        directory = await self._account_dir()
        body = NewOrderReplacing(
            identifiers=[
                messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=name) for name in names
            ],
            replaces=replaces,
            profile=profile,
        )

        def work(net: ProblemKeepingNetwork) -> OrderState:
            response = _post(net, directory, directory["newOrder"], body)
            return _order_state(response.headers["Location"], response)

        return await self._run(work)

    async def order(self, url: str) -> OrderState:
        """The order at ``url`` as the CA has it now (resuming after a crash)."""
        directory = await self._account_dir()
        return await self._run(lambda net: _order_state(url, _post(net, directory, url, None)))

    async def authorization(self, url: str) -> Authorization:
        directory = await self._account_dir()
        return await self._run(lambda net: _authorization(url, _post(net, directory, url, None)))

    def key_authorization(self, token: str) -> str:
        thumbprint = self._key.public_key().thumbprint(hash_function=hashes.SHA256)
        return f"{token}.{b64encode(thumbprint).decode()}"

    def dns01_txt(self, token: str) -> str:
        digest = hashlib.sha256(self.key_authorization(token).encode()).digest()
        return b64encode(digest).decode()

    async def answer(self, challenge_url: str) -> Challenge:
        """Tells the CA the challenge at ``challenge_url`` is in place."""
        directory = await self._account_dir()

        def work(net: ProblemKeepingNetwork) -> Challenge:
            return _challenge(_post(net, directory, challenge_url, _Empty()).json())

        return await self._run(work)

    async def finalize(self, order: OrderState, csr_der: bytes) -> OrderState:
        directory = await self._account_dir()
        request = messages.CertificateRequest(csr=x509.load_der_x509_csr(csr_der))

        def work(net: ProblemKeepingNetwork) -> OrderState:
            return _order_state(order.url, _post(net, directory, order.finalize, request))

        return await self._run(work)

    async def download(self, url: str) -> str:
        """The full chain (leaf first) at a valid order's certificate URL."""
        directory = await self._account_dir()
        return await self._run(lambda net: str(_post(net, directory, url, None).text))

    async def renewal_info(self, ari_id: str) -> RenewalWindow | None:
        """The CA's suggested renewal window for a certificate; None without ARI."""
        base = (await self.directory()).renewal_info
        if base is None:
            return None
        url = f"{base.rstrip('/')}/{ari_id}"

        def work(net: ProblemKeepingNetwork) -> RenewalWindow:
            response = net.get(url, content_type=net.JSON_CONTENT_TYPE)
            info = RenewalInfoExplained.from_json(response.json())
            window = info.suggested_window
            return RenewalWindow(
                window.start,
                window.end,
                info.explanation_url,
                retry_after_s(response.headers.get(RETRY_AFTER)),
            )

        return await self._run(work)

    # --- waiting ---------------------------------------------------------------------

    async def wait_authorization(self, url: str, *, timeout_s: float = 60.0) -> Authorization:
        """The authorization once it is no longer pending."""
        return await self._wait(
            lambda: self.authorization(url),
            lambda a: a.status in SETTLED_AUTHORIZATION,
            f"authorization {url}",
            timeout_s,
        )

    async def wait_order(self, url: str, *, timeout_s: float = 60.0) -> OrderState:
        """The order once it is neither pending nor processing (ready, valid or invalid)."""
        return await self._wait(
            lambda: self.order(url),
            lambda o: o.status not in WORKING_ORDER,
            f"order {url}",
            timeout_s,
        )

    async def _wait(
        self,
        fetch: Callable[[], Awaitable[S]],
        done: Callable[[S], bool],
        what: str,
        timeout_s: float,
    ) -> S:
        deadline = time.monotonic() + timeout_s
        while True:
            state = await fetch()
            left = deadline - time.monotonic()
            if done(state):
                return state
            if left <= 0:
                raise AcmeUnavailable(f"{what} is still {state.status} after {timeout_s:g} s")
            await asyncio.sleep(min(left, state.retry_after_s or self._poll_s))

    # --- plumbing --------------------------------------------------------------------

    async def _dir(self) -> messages.Directory:
        if self._directory is None:
            url = self.directory_url
            self._directory = await self._run(lambda net: client.ClientV2.get_directory(url, net))
        return self._directory

    async def _account_dir(self) -> messages.Directory:
        """The directory, for a call signed with the account's URL (kid)."""
        if self.account_url is None:
            raise RuntimeError("no ACME account: register() first, or pass account_url")
        return await self._dir()

    async def _run(self, work: Callable[[ProblemKeepingNetwork], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._in_thread, work)

    def _in_thread(self, work: Callable[[ProblemKeepingNetwork], T]) -> T:
        try:
            return work(self._network())
        except messages.Error as problem:
            raise _acme_problem(problem) from None
        except errors.ConflictError as conflict:
            raise AcmeProblem(ERROR_PREFIX + "conflict", str(conflict), status=409) from None
        except (errors.Error, DeserializationError, OSError, KeyError, ValueError) as error:
            # OSError covers requests' RequestException and TLS failures
            raise AcmeUnavailable(f"ACME at {self.directory_url}: {error}") from None

    def _network(self) -> ProblemKeepingNetwork:
        network: ProblemKeepingNetwork | None = getattr(self._local, "network", None)
        if network is None:
            network = ProblemKeepingNetwork(
                self._key,
                alg=self._alg,
                user_agent=self._user_agent,
                timeout=int(self._timeout_s),
            )
            network.verify_ssl = cast(bool, self._verify)  # requests takes a CA bundle path too
            with self._lock:
                self._networks.append(network)
            self._local.network = network
        network.account = (
            messages.RegistrationResource(uri=self.account_url, body=messages.Registration())
            if self.account_url
            else None
        )
        return network


def _post(net: ProblemKeepingNetwork, directory: messages.Directory, url: str, body: Any) -> Any:
    """A signed POST (``body`` None: POST-as-GET)."""
    return net.post(url, body, new_nonce_url=directory["newNonce"])


def _account_key(pem: str) -> tuple[JWK, JWASignature]:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        algorithms = {256: ES256, 384: ES384, 521: ES512}
        return JWKEC(key=key), algorithms[key.curve.key_size]
    if isinstance(key, rsa.RSAPrivateKey):
        return JWKRSA(key=key), RS256
    raise ValueError("the ACME account key must be an EC or RSA private key")


def _optional(directory: messages.Directory, name: str) -> str | None:
    try:
        return str(directory[name])
    except KeyError:
        return None


def _acme_problem(problem: messages.Error) -> AcmeProblem:
    identifier = problem.identifier.value if problem.identifier is not None else None
    if identifier is None and problem.subproblems:
        first = problem.subproblems[0].identifier
        identifier = first.value if first is not None else None
    return AcmeProblem(
        problem.typ,
        problem.detail or problem.title or "",
        status=getattr(problem, "status", None),
        retry_after=getattr(problem, "retry_after", None),
        identifier=identifier,
    )


def _problem_of(body: Mapping[str, Any] | None) -> AcmeProblem | None:
    if not body:
        return None
    identifier = body.get("identifier") or {}
    return AcmeProblem(
        str(body.get("type", "about:blank")),
        str(body.get("detail") or body.get("title") or ""),
        status=body.get("status"),
        identifier=identifier.get("value"),
    )


def _order_state(url: str, response: Any) -> OrderState:
    body = response.json()
    return OrderState(
        url=url,
        status=str(body.get("status", "unknown")),
        names=tuple(i["value"] for i in body.get("identifiers", ())),
        authorizations=tuple(body.get("authorizations", ())),
        finalize=str(body.get("finalize", "")),
        certificate=body.get("certificate"),
        error=_problem_of(body.get("error")),
        retry_after_s=retry_after_s(response.headers.get(RETRY_AFTER)),
    )


def _challenge(body: Mapping[str, Any]) -> Challenge:
    return Challenge(
        type=str(body.get("type", "")),
        url=str(body.get("url", "")),
        token=str(body.get("token", "")),
        status=str(body.get("status", "pending")),
        error=_problem_of(body.get("error")),
    )


def _authorization(url: str, response: Any) -> Authorization:
    body = response.json()
    messages.Authorization.from_json(body)  # refuses an answer that is no authorization
    return Authorization(
        url=url,
        name=str(body["identifier"]["value"]),
        wildcard=bool(body.get("wildcard", False)),
        status=str(body.get("status", "pending")),
        challenges=tuple(_challenge(c) for c in body.get("challenges", ())),
        retry_after_s=retry_after_s(response.headers.get(RETRY_AFTER)),
    )
