"""DNS zones and records: ``v-add-dns-domain`` … ``v-unsuspend-dns-record``.

A new zone gets the records of Hestia's ``default`` DNS template (an NS per name server, A @
and mail, CNAME www/ftp/webmail, MX, SPF and DMARC TXT, SRV for submission/IMAP/POP3).
``v-add-dns-record`` is not idempotent, as in Hestia: each call appends a record with the next
free id, duplicates included.
Values are kept as Hestia keeps them (zone-file text: quoted TXT, FQDNs with a trailing dot).
"""

from __future__ import annotations

import ipaddress
from datetime import timedelta

from ops.devtools.simnode import validation as v
from ops.devtools.simnode.commands import (
    Node,
    command,
    domain_is_ip,
    domain_new,
    not_exist,
    package_full,
    suspended,
    system_enabled,
    unsuspended,
    user_valid,
)
from ops.devtools.simnode.output import render
from ops.devtools.simnode.state import Conf, DnsZone, UserData
from ops.devtools.simnode.validation import Exit, HestiaError, arg, check_args

# install/common/templates/dns/default.tpl: (RECORD, TYPE, PRIORITY, VALUE); ids are positions.
DEFAULT_TEMPLATE = [
    *[("@", "NS", "", f"%ns{i}%.") for i in range(1, 9)],
    ("@", "A", "", "%ip%"),
    ("www", "CNAME", "", "%domain%."),
    ("ftp", "CNAME", "", "%domain%."),
    ("mail", "A", "", "%ip%"),
    ("webmail", "CNAME", "", "mail.%domain%."),
    ("@", "MX", "0", "mail.%domain%."),
    ("@", "TXT", "", '"v=spf1 a mx ip4:%ip% -all"'),
    ("_dmarc", "TXT", "", '"v=DMARC1; p=quarantine; pct=100"'),
    ("_submission._tcp", "SRV", "1", "0 587 mail.%domain%."),
    ("_imap._tcp", "SRV", "1", "0 143 mail.%domain%."),
    ("_imaps._tcp", "SRV", "1", "0 993 mail.%domain%."),
    ("_pop3._tcp", "SRV", "1", "0 110 mail.%domain%."),
    ("_pop3s._tcp", "SRV", "1", "0 995 mail.%domain%."),
]
_ZONE_KEYS = [
    "IP",
    "TPL",
    "TTL",
    "EXP",
    "SOA",
    "SERIAL",
    "DNSSEC",
    "SRC",
    "RECORDS",
    "SUSPENDED",
    "TIME",
    "DATE",
]
_FQDN_TYPES = ("NS", "CNAME", "MX", "PTR", "SRV")


def zone_of(data: UserData, domain: str) -> DnsZone:
    zone = data.dns.get(domain)
    if zone is None:
        raise not_exist("dns domain", domain)
    return zone


def _bump_serial(node: Node, zone: DnsZone) -> None:
    # update_domain_serial: YYYYMMDDNN, or +1 when today's serial is already in use.
    today = int(node.now.strftime("%Y%m%d") + "01")
    zone.conf["SERIAL"] = str(max(today, int(zone.conf.get("SERIAL") or 0) + 1))
    zone.conf["RECORDS"] = str(len(zone.records))


@command("v-add-dns-domain")
def add_dns_domain(node: Node, argv: list[str]) -> str:
    domain = v.format_domain(arg(argv, 1))
    check_args(argv, 3, "v-add-dns-domain", "USER DOMAIN IP [NS1] [NS2] [NS3] [..] [NS8] [RESTART]")
    user, ip, restart, dnssec = argv[0], argv[2], arg(argv, 11), arg(argv, 12)
    v.user_format(user)
    v.domain_format(domain)
    v.ip_format(ip)
    system_enabled(node, "DNS_SYSTEM")
    data = user_valid(node, user)
    unsuspended(data.conf, "user", user)
    v.restart_format(restart)
    domain_new(node, "dns", user, [domain])
    domain_is_ip(domain)
    if dnssec:
        v.boolean_format(dnssec, "dnssec")
    package_full(data, "DNS_DOMAINS", len(data.dns))
    template = data.conf.get("DNS_TEMPLATE") or "default"
    if template != "default":
        raise HestiaError(Exit.NOTEXIST, f"{template} dns template doesn't exist")
    ns = [a.strip(".") for a in argv[3:11]] + [""] * 8
    for i, name in enumerate(ns[:8], start=1):
        if name:
            v.domain_format(name, f"ns{i}")
    if not ns[1]:
        # Without NS2 Hestia takes all name servers from the user's package, NS1 included.
        ns = data.conf.get("NS", "").split(",") + [""] * 8
    subs = {"%ip%": ip, "%domain%": domain} | {f"%ns{i}%": ns[i - 1] for i in range(1, 9)}
    records = []
    for ident, (name, rtype, prio, value) in enumerate(DEFAULT_TEMPLATE, start=1):
        if rtype == "NS" and ident >= 3 and not ns[ident - 1]:
            continue
        for key, sub in subs.items():
            value = value.replace(key, sub)
        records.append(_record(node, str(ident), name, rtype, prio, value))
    zone = DnsZone(conf={}, records=records)
    zone.conf = {
        "DOMAIN": domain,
        "IP": ip,
        "TPL": template,
        "TTL": "14400",
        "EXP": (node.now + timedelta(days=365)).strftime("%Y-%m-%d"),
        "SOA": ns[0],
        "SERIAL": "",
        "SRC": "",
        "RECORDS": str(len(records)),
        "DNSSEC": dnssec or "no",
        "KEY": "",
        "SLAVE": "no",
        "MASTER": "",
        "SUSPENDED": "no",
        "TIME": node.time,
        "DATE": node.date,
    }
    _bump_serial(node, zone)
    data.dns[domain] = zone
    node.changed = True
    return ""


def _record(node: Node, ident: str, name: str, rtype: str, prio: str, value: str) -> Conf:
    return {
        "ID": ident,
        "RECORD": name,
        "TYPE": rtype,
        "PRIORITY": prio,
        "VALUE": value,
        "SUSPENDED": "no",
        "TIME": node.time,
        "DATE": node.date,
    }


@command("v-delete-dns-domain")
def delete_dns_domain(node: Node, argv: list[str]) -> str:
    check_args(argv, 2, "v-delete-dns-domain", "USER DOMAIN [RESTART]")
    domain = v.format_domain(argv[1])
    v.user_format(argv[0])
    v.domain_format(domain)
    v.restart_format(arg(argv, 2))
    system_enabled(node, "DNS_SYSTEM")
    data = user_valid(node, argv[0])
    zone_of(data, domain)
    del data.dns[domain]
    node.changed = True
    return ""


def _zone_fields(zone: DnsZone) -> dict[str, str]:
    return {key: zone.conf.get(key, "") for key in _ZONE_KEYS}


@command("v-list-dns-domain")
def list_dns_domain(node: Node, argv: list[str]) -> str:
    check_args(argv, 2, "v-list-dns-domain", "USER DOMAIN [FORMAT]")
    v.user_format(argv[0])
    v.domain_format(argv[1])
    zone = zone_of(user_valid(node, argv[0]), argv[1])
    return render({argv[1]: _zone_fields(zone)}, arg(argv, 2, "shell"), name_key="DOMAIN")


@command("v-list-dns-domains")
def list_dns_domains(node: Node, argv: list[str]) -> str:
    check_args(argv, 1, "v-list-dns-domains", "USER [FORMAT]")
    v.user_format(argv[0])
    data = user_valid(node, argv[0])
    zones = {d: _zone_fields(z) for d, z in data.dns.items()}
    return render(zones, arg(argv, 1, "shell"), name_key="DOMAIN")


@command("v-list-dns-records")
def list_dns_records(node: Node, argv: list[str]) -> str:
    check_args(argv, 2, "v-list-dns-records", "USER DOMAIN [FORMAT]")
    v.user_format(argv[0])
    v.domain_format(argv[1])
    zone = zone_of(user_valid(node, argv[0]), argv[1])
    keys = ("RECORD", "TYPE", "PRIORITY", "VALUE", "ID", "SUSPENDED", "TIME", "DATE", "TTL")
    objects = {}
    for record in zone.records:
        full = {**record, "TTL": record.get("TTL") or zone.conf["TTL"]}
        full["VALUE"] = full["VALUE"].replace("%quote%", "'")
        objects[record["ID"]] = {key: full.get(key, "") for key in keys}
    return render(objects, arg(argv, 2, "shell"), name_key="ID")


def _normalise_value(rtype: str, value: str) -> str:
    """What v-add-dns-record does to VALUE before it validates and stores it."""
    if rtype in _FQDN_TYPES and not value.endswith("."):
        value += "."
    if rtype != "CAA":
        value = value.replace('"', "")
        if rtype not in ("SRV", "DNSKEY", "DS", "TLSA", "KEY", "IPSECKEY") and any(
            c in value for c in "; \t"
        ):
            value = f'"{value}"'
    return value


def _value_format(rtype: str, value: str) -> None:
    # Hestia delegates this to a PHP validator; these are the checks that matter for its users.
    try:
        if rtype == "A":
            ipaddress.IPv4Address(value)
        elif rtype == "AAAA":
            ipaddress.IPv6Address(value)
    except ValueError as exc:
        raise HestiaError(Exit.INVALID, f"invalid dns record format :: {value}") from exc
    if not value or "\n" in value:
        raise HestiaError(Exit.INVALID, f"invalid dns record format :: {value}")
    dots = {"NS": 3, "SRV": 3, "CNAME": 2, "MX": 2, "PTR": 2}.get(rtype)
    if dots and value.count(".") < dots:
        raise HestiaError(
            Exit.INVALID,
            f"{rtype} record {value.rstrip('.')} should be a fully qualified domain name (FQDN)",
        )


def add_record(node: Node, argv: list[str]) -> None:
    """``v-add-dns-record`` after its argument count check; mail uses it for the DKIM record."""
    user, domain = argv[0], v.format_domain(argv[1])
    record, rtype, value = argv[2].lower(), argv[3].upper(), argv[4]
    priority, ident, ttl = arg(argv, 5) or "10", arg(argv, 6), arg(argv, 8)
    if rtype not in ("MX", "SRV"):
        priority = ""
    value = _normalise_value(rtype, value)
    if record == "@" and rtype == "CNAME":
        raise HestiaError(Exit.INVALID, "CNAME on root is not allowed")
    v.user_format(user)
    v.domain_format(domain)
    v.common_format(record, "record")
    v.dns_type_format(rtype)
    _value_format(rtype, value)
    system_enabled(node, "DNS_SYSTEM")
    data = user_valid(node, user)
    unsuspended(data.conf, "user", user)
    zone = zone_of(data, domain)
    unsuspended(zone.conf, "dns", domain)
    package_full(data, "DNS_RECORDS", len(zone.records))
    ident = ident or str(max((int(r["ID"]) for r in zone.records), default=0) + 1)
    v.id_format(ident)
    if any(r["ID"] == ident for r in zone.records):
        raise HestiaError(Exit.EXISTS, f"ID={ident} already exists")
    if ttl:
        v.int_format(ttl, "ttl")
    v.restart_format(arg(argv, 7))
    new = _record(node, ident, record, rtype, priority, value.replace("'", "%quote%"))
    if ttl:
        new["TTL"] = ttl
    zone.records.append(new)
    zone.records.sort(key=lambda r: int(r["ID"]))
    _bump_serial(node, zone)
    node.changed = True


@command("v-add-dns-record")
def add_dns_record(node: Node, argv: list[str]) -> str:
    usage = "USER DOMAIN RECORD TYPE VALUE [PRIORITY] [ID] [RESTART] [TTL]"
    check_args(argv, 5, "v-add-dns-record", usage)
    add_record(node, argv)
    return ""


@command("v-delete-dns-record")
def delete_dns_record(node: Node, argv: list[str]) -> str:
    check_args(argv, 3, "v-delete-dns-record", "USER DOMAIN ID [RESTART]")
    domain = v.format_domain(argv[1])
    v.user_format(argv[0])
    v.domain_format(domain)
    v.id_format(argv[2])
    v.restart_format(arg(argv, 3))
    zone = zone_of(user_valid(node, argv[0]), domain)
    target = next((r for r in zone.records if r["ID"] == argv[2]), None)
    if target is None:
        raise not_exist(f"{domain} id", argv[2])
    if (
        target["TYPE"] in ("A", "NS")
        and sum(r["TYPE"] == target["TYPE"] for r in zone.records) <= 1
    ):
        raise HestiaError(
            Exit.INVALID, f"at least one {target['TYPE']} record should remain active"
        )
    zone.records.remove(target)
    _bump_serial(node, zone)
    node.changed = True
    return ""


def delete_records_named(node: Node, zone: DnsZone, names: set[str]) -> None:
    """Drop every record whose RECORD is in ``names`` (mail's DKIM clean-up)."""
    zone.records = [r for r in zone.records if r["RECORD"] not in names]
    _bump_serial(node, zone)


def _set_zone_suspended(zone: DnsZone, value: str) -> None:
    zone.conf["SUSPENDED"] = value
    for record in zone.records:
        record["SUSPENDED"] = value


@command("v-suspend-dns-domain")
def suspend_dns_domain(node: Node, argv: list[str]) -> str:
    check_args(argv, 2, "v-suspend-dns-domain", "USER DOMAIN [RESTART]")
    domain = v.format_domain(argv[1])
    v.user_format(argv[0])
    v.domain_format(domain)
    v.restart_format(arg(argv, 2))
    system_enabled(node, "DNS_SYSTEM")
    zone = zone_of(user_valid(node, argv[0]), domain)
    unsuspended(zone.conf, "dns", domain)
    _set_zone_suspended(zone, "yes")
    node.changed = True
    return ""


@command("v-unsuspend-dns-domain")
def unsuspend_dns_domain(node: Node, argv: list[str]) -> str:
    check_args(argv, 2, "v-unsuspend-dns-domain", "USER DOMAIN")
    domain = v.format_domain(argv[1])
    v.user_format(argv[0])
    v.domain_format(domain)
    system_enabled(node, "DNS_SYSTEM")
    zone = zone_of(user_valid(node, argv[0]), domain)
    suspended(zone.conf, "dns", domain)
    _set_zone_suspended(zone, "no")
    node.changed = True
    return ""


def _zone_record(node: Node, argv: list[str], name: str) -> tuple[DnsZone, Conf]:
    """The checks v-suspend-dns-record and v-unsuspend-dns-record share, in Hestia's order."""
    check_args(argv, 3, name, "USER DOMAIN ID [RESTART]")
    domain = v.format_domain(argv[1])
    v.user_format(argv[0])
    v.domain_format(domain)
    v.id_format(argv[2])
    v.restart_format(arg(argv, 3))
    system_enabled(node, "DNS_SYSTEM")
    zone = zone_of(user_valid(node, argv[0]), domain)
    unsuspended(zone.conf, "dns", domain)
    target = next((r for r in zone.records if r["ID"] == argv[2]), None)
    if target is None:
        raise not_exist(f"{domain} id", argv[2])
    return zone, target


@command("v-suspend-dns-record")
def suspend_dns_record(node: Node, argv: list[str]) -> str:
    zone, record = _zone_record(node, argv, "v-suspend-dns-record")
    unsuspended(record, "id", record["ID"])
    record["SUSPENDED"] = "yes"
    _bump_serial(node, zone)
    node.changed = True
    return ""


@command("v-unsuspend-dns-record")
def unsuspend_dns_record(node: Node, argv: list[str]) -> str:
    # Hestia does not check that the record is suspended: unsuspending twice exits 0.
    zone, record = _zone_record(node, argv, "v-unsuspend-dns-record")
    record["SUSPENDED"] = "no"
    _bump_serial(node, zone)
    node.changed = True
    return ""
