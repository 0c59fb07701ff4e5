"""Sealed passwords name the key they were sealed under, so the key can be rotated: a sealer
seals under its current key, unseals under it or any retired key, and re-seals an old text
under the current key. Texts sealed before key ids (``v1:``) stay readable."""

from __future__ import annotations

import pytest

from ops.adapters.sealing import PasswordSealer, SealError, private_key_sealer

PASSWORD = "Cl3ar-Pa55word!"
OLD_KEY = "an-old-secret-key-of-32-characters!"
NEW_KEY = "a-new-secret-key-of-32-characters!!"
# sealed by the sealer of before key ids (v1) under OLD_KEY
V1_UNDER_OLD_KEY = "v1:fKYQ7mEEjiOt6AEsuGCjuyJwYaNUvUYoEtCNLyQ0vHQVngWv1wTgGgjm-w=="


def test_a_sealed_text_names_its_key_by_an_id_that_is_not_the_key() -> None:
    sealer = PasswordSealer(NEW_KEY)
    version, key_id, _ = sealer.seal(PASSWORD).split(":")
    assert (version, key_id) == ("v2", sealer.key_id)
    assert len(key_id) == 12 and key_id not in NEW_KEY.encode().hex()
    assert PasswordSealer(NEW_KEY).key_id == key_id != PasswordSealer(OLD_KEY).key_id
    assert NEW_KEY not in repr(sealer)


def test_a_retired_key_still_unseals_what_it_sealed_but_seals_nothing_new() -> None:
    old_text = PasswordSealer(OLD_KEY).seal(PASSWORD)
    rotated = PasswordSealer(NEW_KEY, [OLD_KEY])
    assert rotated.unseal(old_text) == PASSWORD
    assert rotated.unseal(V1_UNDER_OLD_KEY) == PASSWORD
    assert rotated.key_id_of(old_text) == rotated.key_id_of(V1_UNDER_OLD_KEY)
    assert rotated.key_id_of(old_text) == PasswordSealer(OLD_KEY).key_id
    assert rotated.seal(PASSWORD).startswith(f"v2:{PasswordSealer(NEW_KEY).key_id}:")


def test_a_v1_text_still_unseals_under_the_key_that_sealed_it() -> None:
    assert PasswordSealer(OLD_KEY).unseal(V1_UNDER_OLD_KEY) == PASSWORD
    with pytest.raises(SealError):
        PasswordSealer(NEW_KEY).unseal(V1_UNDER_OLD_KEY)


def test_without_the_retired_key_an_old_text_is_refused_naming_its_key_id() -> None:
    old = PasswordSealer(OLD_KEY)
    with pytest.raises(SealError, match=old.key_id) as refused:
        PasswordSealer(NEW_KEY).unseal(old.seal(PASSWORD))
    assert OLD_KEY not in str(refused.value) and NEW_KEY not in str(refused.value)


def test_resealing_moves_a_text_to_the_current_key_once() -> None:
    rotated = PasswordSealer(NEW_KEY, [OLD_KEY])
    for old_text in (PasswordSealer(OLD_KEY).seal(PASSWORD), V1_UNDER_OLD_KEY):
        resealed = rotated.reseal(old_text)
        assert resealed is not None
        assert PasswordSealer(NEW_KEY).unseal(resealed) == PASSWORD
        assert rotated.reseal(resealed) is None  # already under the current key


def test_a_v1_text_under_the_current_key_is_resealed_as_v2() -> None:
    sealer = PasswordSealer(OLD_KEY)
    resealed = sealer.reseal(V1_UNDER_OLD_KEY)
    assert resealed is not None and resealed.startswith(f"v2:{sealer.key_id}:")


def test_a_text_whose_key_id_was_swapped_does_not_open() -> None:
    rotated = PasswordSealer(NEW_KEY, [OLD_KEY])
    text = PasswordSealer(OLD_KEY).seal(PASSWORD)
    swapped = text.replace(PasswordSealer(OLD_KEY).key_id, rotated.key_id)
    with pytest.raises(SealError):
        rotated.unseal(swapped)


@pytest.mark.parametrize(
    "text", ["", "v1:", "v2:", "v2:abcd", "v2:abcd:", "v3:x:y", "v1:!!!", "v1:c2hvcnQ=", "plain"]
)
def test_unsealing_garbage_raises(text: str) -> None:
    with pytest.raises(SealError):
        PasswordSealer(NEW_KEY, [OLD_KEY]).unseal(text)


# --- private keys: a purpose of their own ---------------------------------------------------

KEY_PEM = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49\n-----END PRIVATE KEY-----\n"


def test_a_sealed_private_key_never_opens_as_a_password_nor_a_password_as_a_key() -> None:
    keys, passwords = private_key_sealer(NEW_KEY), PasswordSealer(NEW_KEY)
    assert keys.purpose == "private-key" and passwords.purpose == "service-password"
    assert keys.key_id == passwords.key_id  # the same secret key: rotation sees one id
    sealed_key = keys.seal(KEY_PEM)
    assert keys.unseal(sealed_key) == KEY_PEM
    with pytest.raises(SealError, match="password does not open"):
        passwords.unseal(sealed_key)
    with pytest.raises(SealError, match="private key does not open"):
        keys.unseal(passwords.seal(PASSWORD))
    with pytest.raises(SealError, match="private key of a known version"):
        keys.unseal(V1_UNDER_OLD_KEY)  # v1 texts were passwords only
    assert KEY_PEM not in sealed_key and "PRIVATE KEY" not in sealed_key


def test_a_private_key_is_resealed_under_the_current_key_like_a_password() -> None:
    old_text = private_key_sealer(OLD_KEY).seal(KEY_PEM)
    rotated = private_key_sealer(NEW_KEY, [OLD_KEY])
    resealed = rotated.reseal(old_text)
    assert resealed is not None and private_key_sealer(NEW_KEY).unseal(resealed) == KEY_PEM
    assert rotated.reseal(resealed) is None
    with pytest.raises(ValueError, match="purpose"):
        PasswordSealer(NEW_KEY, purpose="tokens")


def test_a_sealer_for_another_purpose_has_the_same_keys() -> None:
    passwords = PasswordSealer(NEW_KEY, [OLD_KEY])
    keys = passwords.for_purpose("private-key")
    assert (keys.purpose, passwords.purpose) == ("private-key", "service-password")
    assert keys.unseal(private_key_sealer(OLD_KEY).seal(KEY_PEM)) == KEY_PEM
    with pytest.raises(SealError):
        passwords.unseal(keys.seal(KEY_PEM))
