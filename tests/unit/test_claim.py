"""Claim decisions: who may hold a domain, a vanity label or a Hestia username."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain.claim import Claim, ClaimedName, claim_uuid, claimed_names
from domain.errors import Conflict
from domain.step_chain import ServiceFacts, derive_username

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
LABEL = ClaimedName("label", "blog")


def test_a_claim_is_one_aggregate_per_kind_and_name_whoever_asks() -> None:
    first = Claim.make(LABEL, "2102", NOW)
    second = Claim.make(ClaimedName("label", "blog"), "2200", NOW)
    assert first.id == second.id == claim_uuid("label", "BLOG")
    assert claim_uuid("domain", "blog") != first.id  # kinds do not collide


def test_the_holder_taking_its_own_name_again_records_nothing() -> None:
    claim = Claim.make(LABEL, "2102", NOW)
    claim.collect_events()
    assert claim.take("2102", NOW) is False
    assert claim.collect_events() == []


def test_a_name_held_by_another_live_service_is_refused_naming_kind_name_and_holder() -> None:
    claim = Claim.make(LABEL, "2102", NOW)
    claim.collect_events()
    with pytest.raises(Conflict, match="the label blog is already in use by service 2102"):
        claim.take("2200", NOW)
    assert claim.collect_events() == []
    assert claim.holder == "2102"


def test_a_released_name_can_be_retaken_by_another_service() -> None:
    claim = Claim.make(LABEL, "2102", NOW)
    assert claim.release("2102", NOW) is True
    assert claim.holder is None
    assert claim.take("2200", NOW) is True
    assert claim.holder == "2200"
    assert [type(e).__name__ for e in claim.collect_events()] == ["Made", "Released", "Retaken"]


def test_only_the_holder_releases_and_only_once() -> None:
    claim = Claim.make(LABEL, "2102", NOW)
    claim.collect_events()
    assert claim.release("2200", NOW) is False
    assert claim.holder == "2102"
    assert claim.release("2102", NOW) is True
    assert claim.release("2102", NOW) is False
    assert len(claim.collect_events()) == 1


def test_claimed_names_are_the_domain_the_vanity_label_and_the_effective_username() -> None:
    vanity = ServiceFacts("7", "vanity", "blog.hosted.example", "bloguser", "blog")
    assert claimed_names(vanity) == (
        ClaimedName("domain", "blog.hosted.example"),
        ClaimedName("label", "blog"),
        ClaimedName("username", "bloguser"),
    )
    split = ServiceFacts("8", "split", "shop.example.com")
    assert claimed_names(split) == (
        ClaimedName("domain", "shop.example.com"),
        ClaimedName("username", derive_username("shop.example.com", "8")),
    )


def test_claimed_names_must_be_normalised() -> None:
    with pytest.raises(ValueError, match="lower-case"):
        ClaimedName("domain", "Shop.example.com")
    with pytest.raises(ValueError, match="unknown claim kind"):
        ClaimedName("mailbox", "blog")


def test_a_name_whose_holder_is_gone_is_released_then_retaken() -> None:
    claim = Claim.make(ClaimedName("domain", "shop.example.com"), "1", NOW)
    claim.collect_events()
    assert claim.take("2", NOW, holder_gone=True) is True
    events = claim.collect_events()
    assert [type(e).__name__ for e in events] == ["Released", "Retaken"]
    assert claim.holder == "2"
