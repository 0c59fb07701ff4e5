"""The owner marks a service id becomes: each fits where Hestia keeps it, and two ids never
share one."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handlers.ownership import mailbox_mark, owner_param, record_mark, user_mark
from handlers.step import StepParamsError

service_ids = st.from_regex(r"\A[A-Za-z0-9_-]{1,64}\Z")
# Hestia's is_localpart_format_valid with a length of 64, and no label has a dot
LOCAL_PART = re.compile(r"^[A-Za-z0-9_.-][A-Za-z0-9_.-]{0,62}[A-Za-z0-9_.-]$")
# is_common_format_spaces_valid, which v-change-user-name applies to a name
NAME_REFUSED = re.compile(r"""[!|#$^&()+={}:<>?/\\"';%`\t\n]|^ | $""")


@given(service_ids)
def test_every_service_id_makes_marks_hestia_takes(owner: str) -> None:
    assert LOCAL_PART.fullmatch(mailbox_mark(owner)) and "." in mailbox_mark(owner)
    assert not NAME_REFUSED.search(user_mark(owner))
    assert record_mark(owner) == f"hostwright-owner={owner}"


@given(service_ids, service_ids)
def test_two_service_ids_never_share_a_mailbox_mark(one: str, other: str) -> None:
    assert (mailbox_mark(one) == mailbox_mark(other)) == (one == other)


def test_a_plain_whmcs_id_reads_as_itself() -> None:
    assert mailbox_mark("2102") == "hostwright.owner.2102"
    assert mailbox_mark("Ab").startswith("hostwright.ownerhash.")
    assert mailbox_mark("Ab") != mailbox_mark("ab") == "hostwright.owner.ab"


@pytest.mark.parametrize("bad", ["", "7 7", "7;id", "x" * 65, 7])
def test_an_owner_that_is_not_a_service_id_is_refused(bad: object) -> None:
    with pytest.raises(StepParamsError):
        owner_param({"owner": bad})
