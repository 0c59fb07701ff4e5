"""Web domains: ``v-add-web-domain`` … ``v-unsuspend-web-domain`` with Hestia's order of checks.

A web domain's document root is ``/home/<user>/web/<domain>/public_html/`` on the simulated
host (under the node's file-system root), which the node's HTTP server serves ACME challenge
files from. Its SSL commands are in ``v_ssl.py``.
"""

from __future__ import annotations

import shutil

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
from ops.devtools.simnode.state import Conf, UserData
from ops.devtools.simnode.validation import Exit, HestiaError, arg, check_args

BACKEND_TEMPLATES = (
    {"default", "no-php", "socket"}
    | {f"PHP-{major}_{minor}" for major, minor in ((5, 6), (7, 0), (7, 1), (7, 2), (7, 3), (7, 4))}
    | {f"PHP-8_{minor}" for minor in range(5)}
)
PROXY_TEMPLATES = {"default", "caching", "hosting", "proxy_ip"}
DEFAULT_PROXY_EXT = (
    "css,htm,html,js,mjs,json,xml,apng,avif,bmp,cur,gif,ico,jfif,jpg,jpeg,pjp,pjpeg,png,svg,tif,"
    "tiff,webp,aac,caf,flac,m4a,midi,mp3,ogg,opus,wav,3gp,av1,avi,m4v,mkv,mov,mpg,mpeg,mp4,mp4v,"
    "webm,otf,ttf,woff,woff2,doc,docx,odf,odp,ods,odt,pdf,ppt,pptx,rtf,txt,xls,xlsx,7z,bz2,gz,"
    "rar,tar,tgz,zip,apk,appx,bin,dmg,exe,img,iso,jar,msi,webmanifest"
)
# A short stand-in for Hestia's public-suffix check (is_valid_2_part_extension).
TWO_PART_SUFFIXES = {"co.uk", "org.uk", "ac.uk", "com.au", "net.au", "co.nz", "co.za", "com.br"}
_LIST_KEYS = [
    "IP",
    "IP6",
    "DOCUMENT_ROOT",
    "U_DISK",
    "U_BANDWIDTH",
    "TPL",
    "ALIAS",
    "STATS",
    "STATS_USER",
    "SSL",
    "SSL_FORCE",
    "SSL_HSTS",
    "SSL_HOME",
    "LETSENCRYPT",
    "FTP_USER",
    "FTP_PATH",
    "AUTH_USER",
    "BACKEND",
    "PROXY",
    "PROXY_EXT",
    "FASTCGI_CACHE",
    "FASTCGI_DURATION",
    "REDIRECT",
    "REDIRECT_CODE",
    "CUSTOM_DOCROOT",
    "SUSPENDED",
    "TIME",
    "DATE",
]


def docroot(user: str, domain: str) -> str:
    return f"/home/{user}/web/{domain}/public_html/"


def web_domain_conf(data: UserData, domain: str) -> Conf:
    conf = data.web.get(domain)
    if conf is None:
        raise not_exist("web domain", domain)
    return conf


def _fields(user: str, conf: Conf) -> dict[str, str]:
    root = conf.get("CUSTOM_DOCROOT") or docroot(user, conf["DOMAIN"])
    full = {**conf, "DOCUMENT_ROOT": root}
    return {key: full.get(key, "") for key in _LIST_KEYS}


def _default_alias(domain: str) -> str:
    labels = domain.split(".")
    if len(labels) > 2 and ".".join(labels[-2:]) not in TWO_PART_SUFFIXES:
        return ""
    return f"www.{domain}"


@command("v-add-web-domain")
def add_web_domain(node: Node, argv: list[str]) -> str:
    domain = v.format_domain(arg(argv, 1))
    system_enabled(node, "WEB_SYSTEM")
    check_args(
        argv, 2, "v-add-web-domain", "USER DOMAIN [IP] [RESTART] [ALIASES] [PROXY_EXTENSIONS]"
    )
    user, ip, restart, aliases, proxy_ext = (
        argv[0],
        arg(argv, 2),
        arg(argv, 3),
        arg(argv, 4),
        arg(argv, 5),
    )
    aliases = (
        ",".join(sorted({a.lower().strip(".") for a in aliases.split(",") if a})) if aliases else ""
    )
    v.user_format(user)
    v.domain_format(domain)
    if aliases and aliases != "none":
        v.alias_format(aliases)
    if ip:
        v.ip_format(ip)
    if proxy_ext:
        v.extensions_format(proxy_ext)
    v.restart_format(restart)
    data = user_valid(node, user)
    unsuspended(data.conf, "user", user)
    package_full(data, "WEB_DOMAINS", len(data.web))
    extra = [] if aliases == "none" else aliases.split(",")
    domain_new(node, "web", user, [domain, *extra])
    domain_is_ip(domain)
    if ip and ip != node.ip:
        raise HestiaError(Exit.NOTEXIST, f"ip {ip} doesn't exist")
    alias = "" if aliases == "none" else (aliases or _default_alias(domain))
    data.web[domain] = {
        "DOMAIN": domain,
        "IP": ip or node.ip,
        "IP6": "",
        "CUSTOM_DOCROOT": "",
        "ALIAS": alias,
        "TPL": data.conf.get("WEB_TEMPLATE") or "default",
        "SSL": "no",
        "SSL_FORCE": "no",
        "SSL_HOME": "same",
        "LETSENCRYPT": "no",
        "FTP_USER": "",
        "FTP_MD5": "",
        "BACKEND": data.conf.get("BACKEND_TEMPLATE") or "default",
        "PROXY": data.conf.get("PROXY_TEMPLATE") or "default",
        "PROXY_EXT": proxy_ext or DEFAULT_PROXY_EXT,
        "STATS": "",
        "STATS_USER": "",
        "STATS_CRYPT": "",
        "U_DISK": "0",
        "U_BANDWIDTH": "0",
        "SUSPENDED": "no",
        "TIME": node.time,
        "DATE": node.date,
    }
    node.path(docroot(user, domain)).mkdir(parents=True, exist_ok=True)
    node.changed = True
    return ""


def user_domain_args(
    node: Node, argv: list[str], name: str, usage: str, needed: int = 2
) -> tuple[str, str]:
    check_args(argv, needed, name, usage)
    domain = v.format_domain(argv[1])
    v.user_format(argv[0])
    v.domain_format(domain)
    return argv[0], domain


@command("v-delete-web-domain")
def delete_web_domain(node: Node, argv: list[str]) -> str:
    user, domain = user_domain_args(node, argv, "v-delete-web-domain", "USER DOMAIN [RESTART]")
    v.restart_format(arg(argv, 2))
    system_enabled(node, "WEB_SYSTEM")
    data = user_valid(node, user)
    web_domain_conf(data, domain)
    del data.web[domain]
    data.ssl.pop(domain, None)
    shutil.rmtree(node.path(f"/home/{user}/web/{domain}"), ignore_errors=True)
    node.changed = True
    return ""


@command("v-list-web-domain")
def list_web_domain(node: Node, argv: list[str]) -> str:
    user, domain = user_domain_args(node, argv, "v-list-web-domain", "USER DOMAIN [FORMAT]")
    conf = web_domain_conf(user_valid(node, user), domain)
    return render({domain: _fields(user, conf)}, arg(argv, 2, "shell"), name_key="DOMAIN")


@command("v-list-web-domains")
def list_web_domains(node: Node, argv: list[str]) -> str:
    check_args(argv, 1, "v-list-web-domains", "USER [FORMAT]")
    v.user_format(argv[0])
    data = user_valid(node, argv[0])
    objects = {d: _fields(argv[0], c) for d, c in data.web.items()}
    return render(objects, arg(argv, 1, "shell"), name_key="DOMAIN")


def _changeable(node: Node, user: str, domain: str) -> Conf:
    data = user_valid(node, user)
    unsuspended(data.conf, "user", user)
    conf = web_domain_conf(data, domain)
    unsuspended(conf, "web", domain)
    return conf


@command("v-change-web-domain-backend-tpl")
def change_backend_tpl(node: Node, argv: list[str]) -> str:
    usage = "USER DOMAIN TEMPLATE [RESTART]"
    user, domain = user_domain_args(node, argv, "v-change-web-domain-backend-tpl", usage, 3)
    v.object_format(argv[2], "template")
    v.restart_format(arg(argv, 3))
    system_enabled(node, "WEB_BACKEND")
    conf = _changeable(node, user, domain)
    if argv[2] not in BACKEND_TEMPLATES:
        raise HestiaError(Exit.NOTEXIST, f"{argv[2]} backend template doesn't exist")
    conf["BACKEND"] = argv[2]
    node.changed = True
    return ""


@command("v-change-web-domain-proxy-tpl")
def change_proxy_tpl(node: Node, argv: list[str]) -> str:
    usage = "USER DOMAIN TEMPLATE [EXTENTIONS] [RESTART]"
    user, domain = user_domain_args(node, argv, "v-change-web-domain-proxy-tpl", usage, 3)
    extensions = arg(argv, 3, DEFAULT_PROXY_EXT)
    v.object_format(argv[2], "template")
    v.extensions_format(extensions)
    v.restart_format(arg(argv, 4))
    system_enabled(node, "PROXY_SYSTEM")
    conf = _changeable(node, user, domain)
    if not conf.get("PROXY") or conf["PROXY"] == "no":
        raise HestiaError(Exit.NOTEXIST, f"PROXY={conf.get('PROXY', '')} doesn't exist")
    if argv[2] not in PROXY_TEMPLATES:
        raise HestiaError(Exit.NOTEXIST, f"{argv[2]} proxy template doesn't exist")
    conf["PROXY"] = argv[2]
    conf["PROXY_EXT"] = extensions
    node.changed = True
    return ""


@command("v-suspend-web-domain")
def suspend_web_domain(node: Node, argv: list[str]) -> str:
    user, domain = user_domain_args(node, argv, "v-suspend-web-domain", "USER DOMAIN [RESTART]")
    v.restart_format(arg(argv, 2))
    system_enabled(node, "WEB_SYSTEM")
    conf = web_domain_conf(user_valid(node, user), domain)
    unsuspended(conf, "web", domain)
    conf["SUSPENDED"] = "yes"
    node.changed = True
    return ""


@command("v-unsuspend-web-domain")
def unsuspend_web_domain(node: Node, argv: list[str]) -> str:
    user, domain = user_domain_args(node, argv, "v-unsuspend-web-domain", "USER DOMAIN [RESTART]")
    v.restart_format(arg(argv, 2))
    system_enabled(node, "WEB_SYSTEM")
    conf = web_domain_conf(user_valid(node, user), domain)
    suspended(conf, "web", domain)
    conf["SUSPENDED"] = "no"
    node.changed = True
    return ""
