"""Mail domains, accounts and DKIM: ``v-add-mail-domain`` … ``v-change-mail-account-quota``.

DKIM keys are real RSA keys (``cryptography``); ``v-list-mail-domain-dkim-dns`` prints the
public key the way Hestia does (the PEM body on one line, inside ``'v=DKIM1; k=rsa; p=…'``).
When the same node holds the user's DNS zone for the domain, adding DKIM also adds the
``mail._domainkey`` TXT record to it, and deleting the mail domain removes it, as Hestia does.
"""

from __future__ import annotations

from ops.devtools.simnode import validation as v
from ops.devtools.simnode.commands import (
    Node,
    command,
    domain_is_ip,
    domain_new,
    not_exist,
    package_full,
    read_password,
    suspended,
    system_enabled,
    unsuspended,
    user_valid,
)
from ops.devtools.simnode.dkim_keys import dkim_private_key, dkim_public_body
from ops.devtools.simnode.output import render
from ops.devtools.simnode.state import Conf, MailDomain, UserData
from ops.devtools.simnode.usage_file import mailbox_usage, read_usage
from ops.devtools.simnode.v_dns import add_record, delete_records_named
from ops.devtools.simnode.v_users import password_hash
from ops.devtools.simnode.validation import Exit, HestiaError, arg, check_args

_DOMAIN_KEYS = [
    "ANTIVIRUS",
    "ANTISPAM",
    "DKIM",
    "CATCHALL",
    "ACCOUNTS",
    "RATE_LIMIT",
    "REJECT",
    "U_DISK",
    "SSL",
    "LETSENCRYPT",
    "SUSPENDED",
    "TIME",
    "DATE",
    "WEBMAIL_ALIAS",
    "WEBMAIL",
]
_ACCOUNT_KEYS = [
    "ALIAS",
    "FWD",
    "FWD_ONLY",
    "AUTOREPLY",
    "QUOTA",
    "U_DISK",
    "SUSPENDED",
    "TIME",
    "DATE",
]

# v-list-mail-account (one mailbox) prints a few more fields than v-list-mail-accounts
_ONE_ACCOUNT_KEYS = [*_ACCOUNT_KEYS[:5], "RATE_LIMIT", *_ACCOUNT_KEYS[5:], "WEBMAIL_ALIAS"]


def mail_domain_of(data: UserData, domain: str) -> MailDomain:
    mail = data.mail.get(domain)
    if mail is None:
        raise not_exist("mail domain", domain)
    return mail


def _user_domain(
    node: Node, argv: list[str], name: str, usage: str, needed: int
) -> tuple[str, str]:
    check_args(argv, needed, name, usage)
    domain = v.format_domain(argv[1])
    v.user_format(argv[0])
    v.domain_format(domain)
    return argv[0], domain


def _enable_dkim(node: Node, user: str, data: UserData, domain: str, bits: int) -> None:
    mail = data.mail[domain]
    mail.dkim_private_pem = dkim_private_key(bits)
    mail.conf["DKIM"] = "yes"
    if "dns" in node.roles and domain in data.dns:
        # Hestia passes the selector with "\;" inside double quotes, so the stored zone-file
        # text keeps the backslashes; a resolver sees plain semicolons.
        value = f'"v=DKIM1\\; k=rsa\\; p={dkim_public_body(mail.dkim_private_pem)}"'
        add_record(node, [user, domain, "mail._domainkey", "TXT", value, "", "", "yes", "", "yes"])


@command("v-add-mail-domain")
def add_mail_domain(node: Node, argv: list[str]) -> str:
    usage = "USER DOMAIN [ANTISPAM] [ANTIVIRUS] [DKIM] [DKIM_SIZE] [RESTART] [REJECT_SPAM]"
    user, domain = _user_domain(node, argv, "v-add-mail-domain", usage, 2)
    antispam, antivirus, dkim = arg(argv, 2, "yes"), arg(argv, 3, "yes"), arg(argv, 4, "yes")
    dkim_size, reject = arg(argv, 5, "2048"), arg(argv, 7, "no")
    for value, name in ((antispam, "antispam"), (antivirus, "antivirus"), (dkim, "dkim")):
        if value:
            v.boolean_format(value, name)
    if dkim_size:
        v.int_format(dkim_size, "dkim_size")
    v.restart_format(arg(argv, 6))
    if reject:
        v.boolean_format(reject, "reject")
    system_enabled(node, "MAIL_SYSTEM")
    data = user_valid(node, user)
    unsuspended(data.conf, "user", user)
    domain_new(node, "mail", user, [domain])
    domain_is_ip(domain)
    package_full(data, "MAIL_DOMAINS", len(data.mail))
    conf: Conf = {
        "DOMAIN": domain,
        "ANTIVIRUS": antivirus,
        "ANTISPAM": antispam,
        "REJECT": reject,
        "DKIM": "no",
        "WEBMAIL": "",
        "SSL": "no",
        "LETSENCRYPT": "no",
        "CATCHALL": "",
        "ACCOUNTS": "0",
        "RATE_LIMIT": data.conf.get("RATE_LIMIT", "200"),
        "U_DISK": "0",
        "SUSPENDED": "no",
        "TIME": node.time,
        "DATE": node.date,
    }
    data.mail[domain] = MailDomain(conf=conf)
    node.changed = True
    if dkim == "yes":
        _enable_dkim(node, user, data, domain, int(dkim_size or "2048"))
    return ""


@command("v-add-mail-domain-dkim")
def add_mail_domain_dkim(node: Node, argv: list[str]) -> str:
    usage = "USER DOMAIN [DKIM_SIZE]"
    user, domain = _user_domain(node, argv, "v-add-mail-domain-dkim", usage, 2)
    size = arg(argv, 2, "2048")
    if size:
        v.int_format(size, "dkim_size")
    system_enabled(node, "MAIL_SYSTEM")
    data = user_valid(node, user)
    unsuspended(data.conf, "user", user)
    mail = mail_domain_of(data, domain)
    unsuspended(mail.conf, "mail", domain)
    if mail.conf.get("DKIM") not in ("", "no"):
        raise HestiaError(Exit.EXISTS, f"DKIM={mail.conf['DKIM']} already exists")
    node.changed = True
    _enable_dkim(node, user, data, domain, int(size or "2048"))
    return ""


@command("v-delete-mail-domain")
def delete_mail_domain(node: Node, argv: list[str]) -> str:
    user, domain = _user_domain(node, argv, "v-delete-mail-domain", "USER DOMAIN", 2)
    system_enabled(node, "MAIL_SYSTEM")
    data = user_valid(node, user)
    mail = mail_domain_of(data, domain)
    if mail.conf.get("DKIM") == "yes" and domain in data.dns:
        delete_records_named(node, data.dns[domain], {"mail._domainkey", "_domainkey"})
    del data.mail[domain]
    data.ssl.pop(f"mail.{domain}", None)
    node.changed = True
    return ""


def _domain_fields(domain: str, conf: Conf) -> dict[str, str]:
    full = {**conf, "WEBMAIL_ALIAS": f"webmail.{domain}"}
    return {key: full.get(key, "") for key in _DOMAIN_KEYS}


@command("v-list-mail-domain")
def list_mail_domain(node: Node, argv: list[str]) -> str:
    user, domain = _user_domain(node, argv, "v-list-mail-domain", "USER DOMAIN [FORMAT]", 2)
    mail = mail_domain_of(user_valid(node, user), domain)
    return render(
        {domain: _domain_fields(domain, mail.conf)}, arg(argv, 2, "shell"), name_key="DOMAIN"
    )


@command("v-list-mail-domains")
def list_mail_domains(node: Node, argv: list[str]) -> str:
    check_args(argv, 1, "v-list-mail-domains", "USER [FORMAT]")
    v.user_format(argv[0])
    data = user_valid(node, argv[0])
    objects = {d: _domain_fields(d, m.conf) for d, m in data.mail.items()}
    return render(objects, arg(argv, 1, "shell"), name_key="DOMAIN")


@command("v-list-mail-domain-dkim-dns")
def list_mail_domain_dkim_dns(node: Node, argv: list[str]) -> str:
    usage = "USER DOMAIN [FORMAT]"
    user, domain = _user_domain(node, argv, "v-list-mail-domain-dkim-dns", usage, 2)
    mail = mail_domain_of(user_valid(node, user), domain)
    pub = dkim_public_body(mail.dkim_private_pem) if mail.dkim_private_pem else ""
    pub = pub or "DKIM-SUPPORT-IS-NOT-ACTIVATED"
    fmt = arg(argv, 2, "shell")
    if fmt != "json":
        v.list_format(fmt)
        return f'mail._domainkey\t3600\tIN\tTXT\t"v=DKIM1; k=rsa; p={pub}"\n'
    return render({"mail._domainkey": {"TTL": "3600", "TXT": f"'v=DKIM1; k=rsa; p={pub}'"}}, fmt)


@command("v-add-mail-account")
def add_mail_account(node: Node, argv: list[str]) -> str:
    usage = "USER DOMAIN ACCOUNT PASSWORD [QUOTA]"
    user, domain = _user_domain(node, argv, "v-add-mail-account", usage, 4)
    account, quota = argv[2].lower(), arg(argv, 4, "unlimited")
    v.localpart_format(account)
    if quota != "unlimited":
        v.int_format(quota, "quota")
    system_enabled(node, "MAIL_SYSTEM")
    data = user_valid(node, user)
    unsuspended(data.conf, "user", user)
    mail = mail_domain_of(data, domain)
    unsuspended(mail.conf, "mail", domain)
    package_full(data, "MAIL_ACCOUNTS", len(mail.accounts))
    aliases = {a for c in mail.accounts.values() for a in c.get("ALIAS", "").split(",") if a}
    if account in mail.accounts or account in aliases:
        raise HestiaError(Exit.EXISTS, f"mail account {account} is already exists")
    mail.accounts[account] = {
        "ACCOUNT": account,
        "ALIAS": "",
        "AUTOREPLY": "no",
        "FWD": "",
        "FWD_ONLY": "",
        "MD5": password_hash(read_password(node, argv[3])),
        "QUOTA": quota,
        "U_DISK": "0",
        "SUSPENDED": "no",
        "TIME": node.time,
        "DATE": node.date,
    }
    mail.conf["ACCOUNTS"] = str(len(mail.accounts))
    node.changed = True
    return ""


def _account(
    node: Node, argv: list[str], name: str, *, check_user: bool
) -> tuple[MailDomain, Conf]:
    user, domain = _user_domain(node, argv, name, "USER DOMAIN ACCOUNT", 3)
    v.localpart_format(argv[2])
    system_enabled(node, "MAIL_SYSTEM")
    data = user_valid(node, user)
    if check_user:
        unsuspended(data.conf, "user", user)
    mail = mail_domain_of(data, domain)
    if check_user:
        unsuspended(mail.conf, "mail", domain)
    conf = mail.accounts.get(argv[2])
    if conf is None:
        raise not_exist(f"{domain} account", argv[2])
    return mail, conf


@command("v-add-mail-account-alias")
def add_mail_account_alias(node: Node, argv: list[str]) -> str:
    # Hestia checks every argument's format first, then the objects
    _user_domain(node, argv, "v-add-mail-account-alias", "USER DOMAIN ACCOUNT ALIAS", 4)
    account, alias = argv[2], argv[3]
    v.localpart_format(account)
    v.localpart_format(alias, "malias")
    mail, conf = _account(node, argv, "v-add-mail-account-alias", check_user=True)
    unsuspended(conf, "account", account)
    aliases = {a for c in mail.accounts.values() for a in c.get("ALIAS", "").split(",") if a}
    if alias in mail.accounts:
        raise HestiaError(Exit.EXISTS, f"mail account {alias} already exists")
    if alias in aliases:
        raise HestiaError(Exit.EXISTS, f"mail alias {alias} already exists")
    conf["ALIAS"] = ",".join(a for a in (conf.get("ALIAS", ""), alias) if a)
    node.changed = True
    return ""


@command("v-delete-mail-account")
def delete_mail_account(node: Node, argv: list[str]) -> str:
    mail, conf = _account(node, argv, "v-delete-mail-account", check_user=False)
    del mail.accounts[conf["ACCOUNT"]]
    mail.conf["ACCOUNTS"] = str(len(mail.accounts))
    node.changed = True
    return ""


@command("v-list-mail-accounts")
def list_mail_accounts(node: Node, argv: list[str]) -> str:
    user, domain = _user_domain(node, argv, "v-list-mail-accounts", "USER DOMAIN [FORMAT]", 2)
    mail = mail_domain_of(user_valid(node, user), domain)
    held = read_usage(node.fs_root.parent)
    objects = {
        a: {k: {**c, **mailbox_usage(held, user, domain, a)}.get(k, "") for k in _ACCOUNT_KEYS}
        for a, c in mail.accounts.items()
    }
    return render(objects, arg(argv, 2, "shell"), name_key="ACCOUNT")


@command("v-list-mail-account")
def list_mail_account(node: Node, argv: list[str]) -> str:
    usage = "USER DOMAIN ACCOUNT [FORMAT]"
    user, domain = _user_domain(node, argv, "v-list-mail-account", usage, 3)
    v.localpart_format(argv[2])
    mail = mail_domain_of(user_valid(node, user), domain)
    conf = mail.accounts.get(argv[2])
    if conf is None:
        raise not_exist(f"{domain} account", argv[2])
    full = {**conf, "WEBMAIL_ALIAS": f"webmail.{domain}"}
    fields = {key: full.get(key, "") for key in _ONE_ACCOUNT_KEYS}
    return render({argv[2]: fields}, arg(argv, 3, "shell"), name_key="ACCOUNT")


@command("v-change-mail-account-quota")
def change_mail_account_quota(node: Node, argv: list[str]) -> str:
    _user_domain(node, argv, "v-change-mail-account-quota", "USER DOMAIN ACCOUNT QUOTA", 4)
    v.localpart_format(argv[2])
    quota = argv[3]
    if quota != "unlimited":
        v.int_format(quota, "quota")
    _, conf = _account(node, argv, "v-change-mail-account-quota", check_user=True)
    unsuspended(conf, "account", conf["ACCOUNT"])
    # Hestia stores 0 (and "unlimited", which bash's -eq reads as 0) as unlimited
    conf["QUOTA"] = "unlimited" if quota == "unlimited" or int(quota) == 0 else quota
    node.changed = True
    return ""


@command("v-change-mail-account-password")
def change_mail_account_password(node: Node, argv: list[str]) -> str:
    usage = "USER DOMAIN ACCOUNT PASSWORD"
    _user_domain(node, argv, "v-change-mail-account-password", usage, 4)
    v.localpart_format(argv[2])
    _, conf = _account(node, argv, "v-change-mail-account-password", check_user=True)
    unsuspended(conf, "account", conf["ACCOUNT"])
    conf["MD5"] = password_hash(read_password(node, argv[3]))
    node.changed = True
    return ""


@command("v-suspend-mail-account")
def suspend_mail_account(node: Node, argv: list[str]) -> str:
    _, conf = _account(node, argv, "v-suspend-mail-account", check_user=True)
    unsuspended(conf, "account", conf["ACCOUNT"])
    conf["SUSPENDED"] = "yes"
    node.changed = True
    return ""


@command("v-unsuspend-mail-account")
def unsuspend_mail_account(node: Node, argv: list[str]) -> str:
    _, conf = _account(node, argv, "v-unsuspend-mail-account", check_user=True)
    suspended(conf, "account", conf["ACCOUNT"])
    conf["SUSPENDED"] = "no"
    node.changed = True
    return ""


@command("v-suspend-mail-domain")
def suspend_mail_domain(node: Node, argv: list[str]) -> str:
    user, domain = _user_domain(node, argv, "v-suspend-mail-domain", "USER DOMAIN", 2)
    system_enabled(node, "MAIL_SYSTEM")
    data = user_valid(node, user)
    unsuspended(data.conf, "user", user)
    mail = mail_domain_of(data, domain)
    unsuspended(mail.conf, "mail", domain)
    _set_domain_suspended(mail, "yes")
    node.changed = True
    return ""


def _set_domain_suspended(mail: MailDomain, value: str) -> None:
    # Hestia seds SUSPENDED in mail/<domain>.conf: every mailbox of the domain follows it.
    mail.conf["SUSPENDED"] = value
    for account in mail.accounts.values():
        account["SUSPENDED"] = value


@command("v-unsuspend-mail-domain")
def unsuspend_mail_domain(node: Node, argv: list[str]) -> str:
    user, domain = _user_domain(node, argv, "v-unsuspend-mail-domain", "USER DOMAIN [RESTART]", 2)
    v.restart_format(arg(argv, 2))
    system_enabled(node, "MAIL_SYSTEM")
    mail = mail_domain_of(user_valid(node, user), domain)
    suspended(mail.conf, "mail", domain)
    _set_domain_suspended(mail, "no")
    node.changed = True
    return ""
