"""The simulated node's SSL and file commands, driven over real SSH as Hestia 1.10 answers them,
and the certificates its HTTPS server then presents by SNI (web sites, their aliases, webmail).

Certificate files are written straight into the node's file system (as an upload would leave
them); everything listens on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import os
import re
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import asyncssh
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ops.devtools.mini_ca import Leaf, MiniCa
from ops.devtools.simnode import SimNode, read_command_log
from tests.support.budget import budget
from tests.support.simnode_ssh import Client

USER, DOMAIN = "alice", "shop.test"
NAMES = [DOMAIN, f"www.{DOMAIN}"]


class Ssl:
    """A node with ``alice``'s web and mail domain ``shop.test``, a CA and an SSH login."""

    def __init__(self, node: SimNode, client: Client) -> None:
        self.node, self.client = node, client
        self.root = MiniCa()
        self.ca = self.root.intermediate()

    def write(self, folder: str, name: str, **files: str) -> str:
        """``/tmp/<folder>/<name>.<ext>`` for each of ``files`` (crt=, key=, ca=)."""
        path = self.node.data_dir / "fs" / "tmp" / folder
        path.mkdir(parents=True, exist_ok=True)
        for ext, text in files.items():
            (path / f"{name}.{ext}").write_text(text)
        return f"/tmp/{folder}"

    def leaf_files(self, folder: str, leaf: Leaf, name: str = DOMAIN) -> str:
        ca = self.ca.certificate_pem
        return self.write(folder, name, crt=leaf.certificate_pem, key=leaf.key_pem, ca=ca)

    async def run(self, *argv: str) -> int:
        return int((await self.client.run(*argv)).exit_status or 0)

    async def served(self, name: str, *, verify: bool = True) -> x509.Certificate:
        """The certificate presented for SNI ``name``, verified against the root alone."""
        context = ssl.create_default_context(cadata=self.root.certificate_pem)
        if not verify:
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        port = self.node.ports()["https"]
        _, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname=name
        )
        try:
            der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        finally:
            writer.close()
            await writer.wait_closed()
        return x509.load_der_x509_certificate(der)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Ssl]:
    key = asyncssh.generate_private_key("ssh-ed25519")
    node = SimNode(tmp_path / "node", ssl_check_ms=20)
    node.authorize(key.export_public_key().decode())
    await node.start()
    client = Client(node, key)
    try:
        env = Ssl(node, client)
        assert await env.run("v-add-user", USER, "pw", f"{USER}@example.com") == 0
        assert await env.run("v-add-web-domain", USER, DOMAIN) == 0
        assert await env.run("v-add-mail-domain", USER, DOMAIN, "no", "no", "no") == 0
        yield env
    finally:
        await client.close()
        await node.stop()


async def test_web_ssl_added_listed_changed_and_deleted(env: Ssl) -> None:
    empty = await env.client.json("v-list-web-domain-ssl", USER, DOMAIN, "json")
    assert set(empty[DOMAIN].values()) == {""}
    first = env.ca.leaf(NAMES)
    folder = env.leaf_files("one", first)
    assert await env.run("v-add-web-domain-ssl", USER, DOMAIN, folder) == 0
    assert await env.run("v-add-web-domain-ssl", USER, DOMAIN, folder) == 4  # SSL is on
    listed = (await env.client.json("v-list-web-domain-ssl", USER, DOMAIN, "json"))[DOMAIN]
    assert listed["CRT"] == first.certificate_pem.strip()
    assert listed["KEY"] == first.key_pem.strip()  # in clear, as Hestia prints it
    assert listed["CA"] == env.ca.certificate_pem.strip()
    assert listed["SUBJECT"] == DOMAIN
    assert listed["ALIASES"] == ",".join(NAMES)
    assert re.fullmatch(r"[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4} GMT", listed["NOT_AFTER"])
    assert listed["ISSUER"] == "CN = hostwright test intermediate"
    assert listed["SIGNATURE"] == "ecdsa-with-SHA256" and listed["PUB_KEY"] == "256 bit"
    web = await env.client.json("v-list-web-domain", USER, DOMAIN, "json")
    assert web[DOMAIN]["SSL"] == "yes" and web[DOMAIN]["SSL_HOME"] == "same"
    assert (await env.served(DOMAIN)).serial_number == _serial(first)

    second = env.ca.leaf(NAMES, common_name=None)  # tlsserver-like: no Common Name
    folder = env.leaf_files("two", second)
    assert await env.run("v-change-web-domain-sslcert", USER, DOMAIN, folder) == 0
    listed = (await env.client.json("v-list-web-domain-ssl", USER, DOMAIN, "json"))[DOMAIN]
    assert listed["SUBJECT"] == "" and listed["ALIASES"] == ",".join(NAMES)
    assert (await env.served(f"www.{DOMAIN}")).serial_number == _serial(second)
    # Hestia keeps the replaced certificate, and its key, under the domain's private folder
    private = env.node.data_dir / f"fs/home/{USER}/web/{DOMAIN}/private"
    (kept,) = private.glob("tmp.*")
    assert (kept / f"{DOMAIN}.key").read_text() == first.key_pem

    assert await env.run("v-delete-web-domain-ssl", USER, DOMAIN) == 0
    assert await env.run("v-delete-web-domain-ssl", USER, DOMAIN) == 3
    assert await env.run("v-change-web-domain-sslcert", USER, DOMAIN, folder) == 3  # SSL off
    web = await env.client.json("v-list-web-domain", USER, DOMAIN, "json")
    assert web[DOMAIN]["SSL"] == "no"
    assert (await env.client.json("v-list-web-domain-ssl", USER, DOMAIN, "json"))[DOMAIN][
        "CRT"
    ] == ""


async def test_the_listing_formats_and_its_unknown_domain(env: Ssl) -> None:
    leaf = env.ca.leaf(NAMES)
    assert await env.run("v-add-web-domain-ssl", USER, DOMAIN, env.leaf_files("l", leaf)) == 0
    shell = str((await env.client.run("v-list-web-domain-ssl", USER, DOMAIN)).stdout)
    assert f"SUBJECT:        {DOMAIN}\n" in shell
    assert f"ALIASES:        {' '.join(NAMES)}\n" in shell and "SSL_FORCE:      no" in shell
    csv = str((await env.client.run("v-list-web-domain-ssl", USER, DOMAIN, "csv")).stdout)
    assert csv.startswith("CRT,KEY,CA,SUBJECT,ALIASES,")
    odd = await env.client.run("v-list-web-domain-ssl", USER, DOMAIN, "yaml")
    assert odd.exit_status == 0 and odd.stdout == ""  # Hestia checks no format here
    assert await env.run("v-list-web-domain-ssl", USER, "none.test", "json") == 3
    assert await env.run("v-list-web-domain-ssl", "nobody", DOMAIN, "json") == 3
    assert await env.run("v-list-web-domain-ssl", USER) == 1


async def test_every_refusal_of_an_install_with_hestias_exit_code(env: Ssl) -> None:
    add = ("v-add-web-domain-ssl", USER, DOMAIN)
    good = env.ca.leaf(NAMES)
    ca = env.ca.certificate_pem
    folder = env.leaf_files("good", good)
    other_key = env.ca.leaf(NAMES).key_pem
    assert await env.run(*add) == 1
    assert await env.run("v-add-web-domain-ssl", "bad user", DOMAIN, folder) == 2
    assert await env.run(*add, "/tmp/absent") == 3  # is_folder_exists
    assert await env.run(*add, env.write("it's", DOMAIN, crt="x")) == 2  # quotes
    assert await env.run(*add, folder, "same", "sometimes") == 2  # restart format
    assert await env.run("v-add-web-domain-ssl", "nobody", DOMAIN, folder) == 3
    assert await env.run("v-add-web-domain-ssl", USER, "none.test", folder) == 3
    cases = {
        "no-crt": ({"key": good.key_pem}, 3),
        "no-key": ({"crt": good.certificate_pem}, 3),
        "garbage": ({"crt": "not a certificate", "key": good.key_pem}, 2),
        "no-ca": ({"crt": good.certificate_pem, "key": good.key_pem}, 3),
        "wrong-ca": (
            {"crt": good.certificate_pem, "key": good.key_pem, "ca": env.root.certificate_pem},
            3,
        ),
        "two-keys": ({"crt": good.certificate_pem, "key": good.key_pem * 2, "ca": ca}, 2),
        "encrypted": ({"crt": good.certificate_pem, "key": _encrypted(), "ca": ca}, 10),
        "other-key": ({"crt": good.certificate_pem, "key": other_key, "ca": ca}, 2),
    }
    for name, (files, code) in cases.items():
        assert await env.run(*add, env.write(name, DOMAIN, **files)) == code, name
    assert (await env.client.json("v-list-web-domain", USER, DOMAIN, "json"))[DOMAIN]["SSL"] == "no"
    # openssl verify says "self-signed", not "unable to get local issuer": Hestia lets it pass
    selfsigned = env.root.certificate_pem
    root_key = env.root.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    assert await env.run(*add, env.write("self", DOMAIN, crt=selfsigned, key=root_key)) == 0


async def test_suspended_and_disabled(env: Ssl, tmp_path: Path) -> None:
    folder = env.leaf_files("s", env.ca.leaf(NAMES))
    assert await env.run("v-suspend-web-domain", USER, DOMAIN) == 0
    assert await env.run("v-add-web-domain-ssl", USER, DOMAIN, folder) == 5
    assert await env.run("v-unsuspend-web-domain", USER, DOMAIN) == 0
    assert await env.run("v-add-web-domain-ssl", USER, DOMAIN, folder) == 0
    assert await env.run("v-suspend-user", USER) == 0
    assert await env.run("v-change-web-domain-sslcert", USER, DOMAIN, folder) == 5
    assert await env.run("v-add-mail-domain-ssl", USER, DOMAIN, folder) == 5
    assert await env.run("v-unsuspend-user", USER) == 0

    key = asyncssh.generate_private_key("ssh-ed25519")
    dns_only = SimNode(tmp_path / "dns", ["dns"])
    dns_only.authorize(key.export_public_key().decode())
    await dns_only.start()
    client = Client(dns_only, key)
    try:
        result = await client.run("v-add-web-domain-ssl", USER, DOMAIN, "/tmp")
        assert result.exit_status == 11
        assert (await client.run("v-add-mail-domain-ssl", USER, DOMAIN, "/tmp")).exit_status == 11
    finally:
        await client.close()
        await dns_only.stop()


async def test_mail_ssl_is_served_for_mail_and_webmail(env: Ssl) -> None:
    mail_names = [f"mail.{DOMAIN}", f"webmail.{DOMAIN}"]
    first = env.ca.leaf(mail_names)
    folder = env.leaf_files("mail", first)  # named after the mail domain, as Hestia reads it
    assert await env.run("v-change-mail-domain-sslcert", USER, DOMAIN, folder) == 3  # off
    assert await env.run("v-add-mail-domain-ssl", USER, DOMAIN, folder) == 0
    assert await env.run("v-add-mail-domain-ssl", USER, DOMAIN, folder) == 4
    listed = (await env.client.json("v-list-mail-domain-ssl", USER, DOMAIN, "json"))[DOMAIN]
    assert listed["ALIASES"] == ",".join(mail_names) and listed["KEY"] == first.key_pem.strip()
    mail = await env.client.json("v-list-mail-domain", USER, DOMAIN, "json")
    assert mail[DOMAIN]["SSL"] == "yes"
    for name in mail_names:
        assert (await env.served(name)).serial_number == _serial(first)
    # the web site of the same domain has none: the node's own self-signed one, not mail's
    fallback = await env.served(DOMAIN, verify=False)
    assert fallback.subject.rfc4514_string() == "CN=hestia-simnode"

    second = env.ca.leaf(mail_names)
    folder = env.leaf_files("mail2", second)
    assert await env.run("v-change-mail-domain-sslcert", USER, DOMAIN, folder) == 0
    assert (await env.served(f"webmail.{DOMAIN}")).serial_number == _serial(second)
    assert await env.run("v-delete-mail-domain-ssl", USER, DOMAIN) == 0
    assert await env.run("v-delete-mail-domain-ssl", USER, DOMAIN) == 3
    listed = (await env.client.json("v-list-mail-domain-ssl", USER, DOMAIN, "json"))[DOMAIN]
    assert listed["CRT"] == "" and listed["KEY"] == ""
    assert await env.run("v-list-mail-domain-ssl", USER, "none.test", "json") == 3


async def test_two_installs_at_once_one_fails_as_pkill_openssl_makes_it(env: Ssl) -> None:
    """Hestia tests each key pair with ``pkill openssl; openssl s_server … & sleep 0.5;
    kill $pid``: a second install's test kills the first one's s_server."""
    assert await env.run("v-add-web-domain", USER, "other.test") == 0
    # a window the second install surely reaches while the first is in it
    env.node.executor.openssl.seconds = budget(1.0)
    web = env.leaf_files("a", env.ca.leaf(NAMES))
    other = env.leaf_files("b", env.ca.leaf(["other.test"]), "other.test")
    second = Client(env.node, env.client.key)
    try:
        first = asyncio.create_task(env.client.run("v-add-web-domain-ssl", USER, DOMAIN, web))
        await _until(lambda: env.node.executor.openssl.running == 1)
        late = await second.run("v-add-web-domain-ssl", USER, "other.test", other)
        early = await first
    finally:
        await second.close()
    assert early.exit_status == 2 and "ssl certificate key pair is not valid" in str(early.stdout)
    assert late.exit_status == 0
    assert [e["exit_code"] for e in read_command_log(env.node.data_dir)[-2:]] == [2, 0]
    env.node.executor.openssl.seconds = 0.02
    assert await env.run("v-add-web-domain-ssl", USER, DOMAIN, web) == 0  # alone, it passes


async def test_file_commands_place_a_challenge_the_site_serves(env: Ssl) -> None:
    docroot = f"/home/{USER}/web/{DOMAIN}/public_html"
    known = f"{docroot}/.well-known"
    challenges = f"{known}/acme-challenge"
    fs = env.node.data_dir / "fs"
    assert await env.run("v-add-fs-directory", USER, challenges) == 2  # .well-known is missing
    assert await env.run("v-add-fs-directory", USER, known) == 0
    assert await env.run("v-add-fs-directory", USER, challenges) == 0
    assert await env.run("v-add-fs-directory", USER, challenges) == 0  # mkdir -p
    assert await env.run("v-add-fs-directory", USER, "/var/lib/roundcube") == 2
    assert await env.run("v-add-fs-directory", USER, "relative/dir") == 2
    assert await env.run("v-add-fs-directory", USER, f"{docroot}/../../../../bob") == 2
    assert await env.run("v-add-fs-directory", "nobody", "/tmp/x") == 3
    assert await env.run("v-add-fs-directory", USER) == 1

    (fs / "tmp" / "token").write_text("token.thumbprint")
    os.chmod(fs / "tmp" / "token", 0o600)
    target = f"{challenges}/token"
    assert await env.run("v-copy-fs-file", USER, "/tmp/token", target) == 3  # not the user's
    os.chmod(fs / "tmp" / "token", 0o644)
    assert await env.run("v-copy-fs-file", USER, "/tmp/absent", target) == 3
    (fs / "etc").mkdir()
    (fs / "etc" / "secret").write_text("x")
    assert await env.run("v-copy-fs-file", USER, "/etc/secret", target) == 2
    assert await env.run("v-copy-fs-file", USER, "/tmp/token", "/etc/token") == 2
    assert await env.run("v-copy-fs-file", USER, "/tmp/token") == 1
    assert await env.run("v-copy-fs-file", USER, "/tmp/token", target) == 0

    http = f"http://127.0.0.1:{env.node.ports()['http']}/.well-known/acme-challenge/token"
    async with httpx.AsyncClient(trust_env=False) as web:
        for host in NAMES:
            answer = await web.get(http, headers={"Host": host})
            assert answer.status_code == 200 and answer.text == "token.thumbprint"
        assert (await web.get(http, headers={"Host": "none.test"})).status_code == 404

        assert await env.run("v-delete-fs-file", USER, target) == 0
        assert await env.run("v-delete-fs-file", USER, target) == 0  # rm -f
        assert await env.run("v-delete-fs-file", USER, "/etc/secret") == 2
        assert await env.run("v-delete-fs-file", USER, challenges) == 3  # a folder
        assert (await web.get(http, headers={"Host": DOMAIN})).status_code == 404

        # webmail's root is outside the user's home; a file put there is served for mail.<d>
        webmail = fs / "var/lib/roundcube/public_html/.well-known/acme-challenge"
        webmail.mkdir(parents=True)
        (webmail / "token").write_text("mail.thumbprint")
        answer = await web.get(http, headers={"Host": f"webmail.{DOMAIN}"})
        assert answer.status_code == 200 and answer.text == "mail.thumbprint"
    assert (fs / "etc" / "secret").exists()


# -- helpers ----------------------------------------------------------------------------------


def _serial(leaf: Leaf) -> int:
    return x509.load_pem_x509_certificate(leaf.certificate_pem.encode()).serial_number


def _encrypted() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pass phrase"),
    ).decode()


async def _until(condition: object) -> None:
    deadline = asyncio.get_running_loop().time() + budget(10.0)
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "the condition never came"
        await asyncio.sleep(0.005)
