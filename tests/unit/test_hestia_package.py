"""The package a plan's users go on is named after its exact content (domain/hestia_package.py)."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.hestia_package import content_package, is_content_package, package_definition
from domain.hosting_plan import PACKAGE_DEFAULTS, HostingPlan
from handlers import package_steps
from handlers.step_params import resolve_params

# Hestia's is_object_format_valid for a package name (func/main.sh)
HESTIA_PACKAGE_NAME = re.compile(r"^[A-Za-z0-9][-|._A-Za-z0-9]{0,64}[A-Za-z0-9]$")
BASIC_1G = {"package": "basic", "disk_mb": 1024}


def test_same_content_is_the_same_package_and_other_quotas_another() -> None:
    assert content_package(BASIC_1G) == content_package(dict(BASIC_1G))
    assert re.fullmatch(r"hw-[0-9a-f]{8}-basic", content_package(BASIC_1G))
    assert content_package(BASIC_1G) != content_package({**BASIC_1G, "disk_mb": 5120})
    # the plan's package name is part of the content: two names, two packages
    assert content_package(BASIC_1G) != content_package({**BASIC_1G, "package": "gold"})
    # what the package does not hold does not change its name
    extra = {**BASIC_1G, "php_version": "8.2", "mailbox_quota_mb": 50}
    assert content_package(extra) == content_package(BASIC_1G)
    # a limit left out and a limit set to unlimited are the same package
    assert content_package({**BASIC_1G, "databases": None}) == content_package(BASIC_1G)


def test_the_definition_is_every_package_key_with_the_plans_limits() -> None:
    definition = package_definition(BASIC_1G)
    assert list(definition) == list(PACKAGE_DEFAULTS)
    assert definition["DISK_QUOTA"] == "1024" and definition["BANDWIDTH"] == "unlimited"


def test_a_long_or_odd_plan_name_still_makes_a_valid_hestia_name() -> None:
    for base in ("a" * 64, "basic-", "x.", "b_" * 32, "9"):
        name = content_package({"package": base})
        assert len(name) <= 64 and HESTIA_PACKAGE_NAME.fullmatch(name), name
        assert is_content_package(name)
    # two names cut alike are still two packages
    assert content_package({"package": "a" * 63 + "b"}) != content_package({"package": "a" * 64})


def test_only_names_of_the_content_form_are_recognised_as_hostwrights() -> None:
    assert is_content_package(content_package(BASIC_1G))
    for name in ("default", "system", "basic", "basic-3f9a1c2e", "hw-3f9a1c2", "hw-zzzzzzzz-a"):
        assert not is_content_package(name), name


@settings(max_examples=200, deadline=None)
@given(
    st.tuples(
        st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True),
        st.none() | st.integers(0, 10_000),
    ),
    st.tuples(
        st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True),
        st.none() | st.integers(0, 10_000),
    ),
)
def test_no_content_name_is_the_prefix_of_anothers(
    one: tuple[str, int | None], other: tuple[str, int | None]
) -> None:
    """Hestia's v-delete-user-package moves to ``default`` the users of every package whose name
    starts with the one deleted: one content's name must never start another's."""
    first = content_package(HostingPlan.parse({"package": one[0], "disk_mb": one[1]}).to_json())
    second = content_package(
        HostingPlan.parse({"package": other[0], "disk_mb": other[1]}).to_json()
    )
    if first != second:
        assert not second.startswith(first) and not first.startswith(second)


def test_the_package_written_to_the_node_is_the_content_its_name_digests() -> None:
    """The handler writes exactly ``package_definition(plan)``: one definition, no drift."""
    plan = {"disk_mb": 1024, "bandwidth_mb": None, "web_domains": 3, "mail_accounts": 0}
    quotas = resolve_params({"plan": plan}, {}, str)["quotas"]
    assert package_steps.package_definition(quotas) == package_definition(plan)
