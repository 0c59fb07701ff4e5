"""Web and mail SSL: ``v-add-web-domain-ssl`` … ``v-list-mail-domain-ssl``, as Hestia 1.10 has them.

The install commands read ``SSL_DIR/<domain>.crt``, ``.key`` and the optional ``.ca`` (a mail
domain's too are named after the mail domain) and check them as Hestia's
``is_web_domain_cert_valid`` does, in its order: a missing file → 3; a certificate that does
not parse → 2; no ``.ca`` for a certificate no system root signs → 3 ("Certificate Authority
not found"; the simulated node trusts no root, and openssl's verify of a self-signed
certificate says something else, which Hestia lets pass); a ``.ca`` whose first subject is not
the certificate's issuer → 3; a key file without exactly two ``PRIVATE KEY`` lines → 2; an
encrypted key → 10. Then the key-pair test (``commands.OpensslCheck``): a key that is not the
certificate's, or another install's test running meanwhile, → 2.

A web domain's certificate is kept as ``users[u].ssl[<domain>]``, a mail domain's as
``ssl["mail.<domain>"]`` (Hestia's ``$USER_DATA/ssl/mail.<domain>.*``), ``{CRT, KEY, CA}``.
``v-change-web-domain-sslcert`` moves the old files into ``/home/<u>/web/<d>/private/tmp.*``
as Hestia does, key and all. ``v-list-*-ssl json`` prints the KEY in clear, as Hestia does.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
)

from ops.devtools.simnode import validation as v
from ops.devtools.simnode.commands import (
    Node,
    command,
    system_enabled,
    unsuspended,
    user_valid,
)
from ops.devtools.simnode.state import Conf, UserData
from ops.devtools.simnode.v_mail import mail_domain_of
from ops.devtools.simnode.v_web import user_domain_args, web_domain_conf
from ops.devtools.simnode.validation import Exit, HestiaError, arg

_LIST_KEYS = (
    "CRT",
    "KEY",
    "CA",
    "SUBJECT",
    "ALIASES",
    "NOT_BEFORE",
    "NOT_AFTER",
    "SIGNATURE",
    "PUB_KEY",
    "ISSUER",
)


# -- the checks (func/main.sh, func/domain.sh) ------------------------------------------------


def _ssl_dir_format(node: Node, ssl_dir: str) -> None:
    """``is_format_valid 'ssl_dir'`` is ``is_folder_exists``."""
    if ssl_dir and not node.path(ssl_dir).is_dir():
        raise HestiaError(Exit.NOTEXIST, f"folder {ssl_dir} does not exist")


def _no_quotes(value: str, name: str) -> None:
    """``format_no_quotes``."""
    if any(c in value for c in "'|\"") or "\n" in value:
        raise HestiaError(
            Exit.INVALID, f"Invalid {name} contains qoutes (\" or ' or | ) :: {value}"
        )


def _ssl_empty(conf: Conf) -> None:
    """``is_object_value_empty … '$SSL'``: on already → 4."""
    value = conf.get("SSL", "")
    if value and value != "no":
        raise HestiaError(Exit.EXISTS, f"SSL={value} already exists")


def _ssl_exists(conf: Conf) -> None:
    """``is_object_value_exist … '$SSL'``: not on → 3."""
    value = conf.get("SSL", "")
    if not value or value == "no":
        raise HestiaError(Exit.NOTEXIST, f"SSL={value} doesn't exist")


def _restart(value: str) -> None:
    if value:
        v.restart_format(value)


def _checked_files(node: Node, ssl_dir: str, name: str) -> tuple[Conf, bool]:
    """``is_web_domain_cert_valid`` up to the key-pair test: the files as ``{CRT, KEY, CA}``
    and whether the key is the certificate's."""
    paths = {ext: node.path(f"{ssl_dir}/{name}.{ext}") for ext in ("crt", "key", "ca")}
    for ext in ("crt", "key"):
        if not paths[ext].exists():
            raise HestiaError(Exit.NOTEXIST, f"{ssl_dir}/{name}.{ext} not found")
    crt_text = paths["crt"].read_text(encoding="utf-8", errors="replace")
    key_text = paths["key"].read_text(encoding="utf-8", errors="replace")
    try:
        certificate = x509.load_pem_x509_certificate(crt_text.encode())
    except ValueError:
        raise HestiaError(Exit.INVALID, "SSL Certificate is not valid") from None
    has_ca = paths["ca"].exists()
    ca_text = paths["ca"].read_text(encoding="utf-8", errors="replace") if has_ca else ""
    if not has_ca and certificate.issuer != certificate.subject:
        raise HestiaError(Exit.NOTEXIST, "Certificate Authority not found")
    if has_ca and _first_subject(ca_text) != certificate.issuer:
        raise HestiaError(Exit.NOTEXIST, "SSL intermediate chain is not valid")
    if sum("PRIVATE KEY" in line for line in key_text.splitlines()) != 2:
        raise HestiaError(Exit.INVALID, "SSL Key is not valid")
    if "ENCRYPTED" in key_text:
        raise HestiaError(Exit.FORBIDEN, "SSL Key is protected (remove pass_phrase)")
    files = {"CRT": crt_text, "KEY": key_text, "CA": ca_text}
    return files, _pair_matches(certificate, key_text)


def _first_subject(pem: str) -> x509.Name | None:
    try:
        return x509.load_pem_x509_certificate(pem.encode()).subject
    except ValueError:
        return None


def _pair_matches(certificate: x509.Certificate, key_text: str) -> bool:
    try:
        key = load_pem_private_key(key_text.encode(), password=None)
    except (ValueError, TypeError):
        return False
    spki = (Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    ours = key.public_key().public_bytes(*spki)
    return bool(ours == certificate.public_key().public_bytes(*spki))


# -- web --------------------------------------------------------------------------------------


def _web_target(node: Node, user: str, domain: str) -> tuple[UserData, Conf]:
    data = user_valid(node, user)
    unsuspended(data.conf, "user", user)
    conf = web_domain_conf(data, domain)
    unsuspended(conf, "web", domain)
    return data, conf


@command("v-add-web-domain-ssl")
def add_web_domain_ssl(node: Node, argv: list[str]) -> str:
    usage = "USER DOMAIN SSL_DIR [SSL_HOME] [RESTART]"
    user, domain = user_domain_args(node, argv, "v-add-web-domain-ssl", usage, 3)
    ssl_dir, ssl_home, restart = argv[2], arg(argv, 3, "same"), arg(argv, 4)
    _ssl_dir_format(node, ssl_dir)
    _restart(restart)
    _no_quotes(ssl_dir, "")
    system_enabled(node, "WEB_SYSTEM")
    system_enabled(node, "WEB_SSL")
    data, conf = _web_target(node, user, domain)
    _ssl_empty(conf)
    files, pair_ok = _checked_files(node, ssl_dir, domain)

    def install() -> str:
        data.ssl[domain] = files
        conf.update(SSL="yes", SSL_HOME=ssl_home)
        node.changed = True
        return ""

    return node.check_pair(pair_ok, install)


@command("v-change-web-domain-sslcert")
def change_web_domain_sslcert(node: Node, argv: list[str]) -> str:
    usage = "USER DOMAIN SSL_DIR [RESTART]"
    user, domain = user_domain_args(node, argv, "v-change-web-domain-sslcert", usage, 3)
    ssl_dir, restart = argv[2], arg(argv, 3)
    _ssl_dir_format(node, ssl_dir)
    system_enabled(node, "WEB_SYSTEM")
    data, conf = _web_target(node, user, domain)
    _ssl_exists(conf)
    _restart(restart)
    files, pair_ok = _checked_files(node, ssl_dir, domain)

    def install() -> str:
        _keep_old(node, user, domain, data.ssl.get(domain))
        data.ssl[domain] = files
        node.changed = True
        return ""

    return node.check_pair(pair_ok, install)


def _keep_old(node: Node, user: str, domain: str, old: Conf | None) -> None:
    """Hestia moves the replaced files into a ``mktemp -d`` under the domain's ``private``."""
    if not old:
        return
    kept = node.path(f"/home/{user}/web/{domain}/private/tmp.{secrets.token_hex(5)}")
    kept.mkdir(parents=True)
    for ext, key in (("crt", "CRT"), ("key", "KEY"), ("ca", "CA")):
        if old.get(key):
            (kept / f"{domain}.{ext}").write_text(old[key], encoding="utf-8")
    (kept / f"{domain}.pem").write_text(old.get("CRT", "") + old.get("CA", ""), encoding="utf-8")


@command("v-delete-web-domain-ssl")
def delete_web_domain_ssl(node: Node, argv: list[str]) -> str:
    user, domain = user_domain_args(node, argv, "v-delete-web-domain-ssl", "USER DOMAIN [RESTART]")
    _restart(arg(argv, 2))
    system_enabled(node, "WEB_SYSTEM")
    data = user_valid(node, user)
    conf = web_domain_conf(data, domain)
    _ssl_exists(conf)
    data.ssl.pop(domain, None)
    if conf.get("LETSENCRYPT"):
        conf["LETSENCRYPT"] = "no"
    conf.update(SSL="no", SSL_FORCE="no")
    node.changed = True
    return ""


@command("v-list-web-domain-ssl")
def list_web_domain_ssl(node: Node, argv: list[str]) -> str:
    user, domain = user_domain_args(node, argv, "v-list-web-domain-ssl", "USER DOMAIN [FORMAT]")
    data = user_valid(node, user)
    conf = web_domain_conf(data, domain)
    extra = {"SSL_FORCE": conf.get("SSL_FORCE", "")}
    return _listing(domain, data.ssl.get(domain), arg(argv, 2, "shell"), extra)


# -- mail -------------------------------------------------------------------------------------


def _mail_target(node: Node, user: str, domain: str) -> tuple[UserData, Conf]:
    data = user_valid(node, user)
    unsuspended(data.conf, "user", user)
    mail = mail_domain_of(data, domain)
    unsuspended(mail.conf, "mail", domain)
    return data, mail.conf


def _install_mail(node: Node, argv: list[str], name: str, *, adding: bool) -> str:
    user, domain = user_domain_args(node, argv, name, "USER DOMAIN SSL_DIR [RESTART]", 3)
    ssl_dir, restart = argv[2], arg(argv, 3)
    _ssl_dir_format(node, ssl_dir)
    _restart(restart)
    if adding:
        _no_quotes(ssl_dir, "")
    system_enabled(node, "MAIL_SYSTEM")
    data, conf = _mail_target(node, user, domain)
    (_ssl_empty if adding else _ssl_exists)(conf)
    files, pair_ok = _checked_files(node, ssl_dir, domain)

    def install() -> str:
        data.ssl[f"mail.{domain}"] = files
        conf["SSL"] = "yes"
        node.changed = True
        return ""

    return node.check_pair(pair_ok, install)


@command("v-add-mail-domain-ssl")
def add_mail_domain_ssl(node: Node, argv: list[str]) -> str:
    return _install_mail(node, argv, "v-add-mail-domain-ssl", adding=True)


@command("v-change-mail-domain-sslcert")
def change_mail_domain_sslcert(node: Node, argv: list[str]) -> str:
    return _install_mail(node, argv, "v-change-mail-domain-sslcert", adding=False)


@command("v-delete-mail-domain-ssl")
def delete_mail_domain_ssl(node: Node, argv: list[str]) -> str:
    user, domain = user_domain_args(node, argv, "v-delete-mail-domain-ssl", "USER DOMAIN")
    _restart(arg(argv, 2))
    system_enabled(node, "MAIL_SYSTEM")
    data = user_valid(node, user)
    mail = mail_domain_of(data, domain)
    _ssl_exists(mail.conf)
    data.ssl.pop(f"mail.{domain}", None)
    mail.conf.update(SSL="no", LETSENCRYPT="no")
    node.changed = True
    return ""


@command("v-list-mail-domain-ssl")
def list_mail_domain_ssl(node: Node, argv: list[str]) -> str:
    user, domain = user_domain_args(node, argv, "v-list-mail-domain-ssl", "USER DOMAIN [FORMAT]")
    data = user_valid(node, user)
    mail_domain_of(data, domain)
    return _listing(domain, data.ssl.get(f"mail.{domain}"), arg(argv, 2, "shell"), {})


# -- listing ----------------------------------------------------------------------------------


def _listing(domain: str, stored: Conf | None, fmt: str, extra: dict[str, str]) -> str:
    """What ``v-list-*-domain-ssl`` prints: every field empty without a certificate; an
    unknown format prints nothing (Hestia checks none)."""
    fields = dict.fromkeys(_LIST_KEYS, "")
    if stored:
        fields.update(CRT=stored["CRT"].rstrip("\n"), KEY=stored["KEY"].rstrip("\n"))
        fields["CA"] = stored.get("CA", "").rstrip("\n")
        fields.update(_described(stored["CRT"]))
    render: dict[str, Callable[[], str]] = {
        "json": lambda: json.dumps({domain: fields}, indent=8) + "\n",
        "shell": lambda: _shell(fields, extra),
        "plain": lambda: _plain(fields, extra),
        "csv": lambda: _csv(fields, extra),
    }
    return render[fmt]() if fmt in render else ""


def _described(crt: str) -> dict[str, str]:
    """What Hestia reads from ``openssl x509 -text``: the CN alone as SUBJECT, the DNS names
    of the SANs joined with commas, openssl's dates, algorithm, key size and issuer line."""
    certificate = x509.load_pem_x509_certificate(crt.encode())
    cns = certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = san.value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    key = certificate.public_key()
    bits = key.key_size if isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey) else 0
    oid = certificate.signature_algorithm_oid
    return {
        "SUBJECT": str(cns[0].value) if cns else "",
        "ALIASES": ",".join(names),
        "NOT_BEFORE": _openssl_date(certificate.not_valid_before_utc),
        "NOT_AFTER": _openssl_date(certificate.not_valid_after_utc),
        "SIGNATURE": getattr(oid, "_name", oid.dotted_string),
        "PUB_KEY": f"{bits} bit",
        "ISSUER": ", ".join(
            f"{a.rfc4514_attribute_name} = {a.value!s}" for a in certificate.issuer
        ),
    }


def _openssl_date(moment: datetime) -> str:
    return f"{moment:%b} {moment.day:2d} {moment:%H:%M:%S %Y} GMT"


def _shell(fields: dict[str, str], extra: dict[str, str]) -> str:
    out = [text for text in (fields["CRT"], fields["KEY"], fields["CA"]) if text]
    if not fields["CRT"]:
        return "\n\n".join(out) + ("\n" if out else "")
    lines = [f"SUBJECT:        {fields['SUBJECT']}"]
    if fields["ALIASES"]:
        lines.append(f"ALIASES:        {fields['ALIASES'].replace(',', ' ')}")
    lines += [
        f"VALID FROM:     {fields['NOT_BEFORE']}",
        f"VALID TIL:      {fields['NOT_AFTER']}",
        f"SIGNATURE:      {fields['SIGNATURE']}",
        f"PUB_KEY:        {fields['PUB_KEY']}",
        f"ISSUER:         {fields['ISSUER']}",
        *(f"{k + ':':<16}{value}" for k, value in extra.items()),
    ]
    return "\n\n".join(out) + "\n\n\n" + "\n".join(lines) + "\n"


def _plain(fields: dict[str, str], extra: dict[str, str]) -> str:
    out = [text for text in (fields["CRT"], fields["KEY"], fields["CA"]) if text]
    head = "\n\n".join(out) + ("\n" if out else "")
    if not fields["CRT"]:
        return head
    rest = [fields[k] for k in _LIST_KEYS[3:]]
    rest[1] = rest[1].replace(",", " ")
    return head + "\n".join([*rest, *extra.values()]) + "\n"


def _csv(fields: dict[str, str], extra: dict[str, str]) -> str:
    header = ",".join([*_LIST_KEYS, *extra])
    cells = [*fields.values(), *extra.values()]
    cells[4] = cells[4].replace(",", " ")
    return header + "\n" + ",".join(f'"{c}"' for c in cells) + "\n"
