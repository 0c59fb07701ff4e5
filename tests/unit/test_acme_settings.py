"""The ACME CA's process settings: the directory (Let's Encrypt production unless set), the
contact address and the CA bundle for a private test CA, each checked at start."""

from __future__ import annotations

from pathlib import Path

from ops.settings import LETS_ENCRYPT_DIRECTORY, STAGING_ACME_DIRECTORY, Settings


def test_the_default_directory_is_lets_encrypt_production() -> None:
    settings = Settings.load({})
    assert settings.acme_directory == "https://acme-v02.api.letsencrypt.org/directory"
    assert settings.acme_directory == LETS_ENCRYPT_DIRECTORY
    assert settings.acme_email is None and settings.acme_ca_bundle is None
    assert settings.acme_profile is None  # the CA's default profile


def test_staging_a_contact_and_a_bundle_are_read(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    settings = Settings.load(
        {
            "HOSTWRIGHT_ACME_DIRECTORY": STAGING_ACME_DIRECTORY,
            "HOSTWRIGHT_ACME_EMAIL": "ops@provider.test",
            "HOSTWRIGHT_ACME_CA_BUNDLE": str(bundle),
            "HOSTWRIGHT_ACME_PROFILE": "tlsserver",
        }
    )
    assert settings.acme_profile == "tlsserver"
    assert settings.acme_directory.startswith("https://acme-staging-v02.")
    assert (settings.acme_email, settings.acme_ca_bundle) == ("ops@provider.test", str(bundle))


def test_each_bad_value_is_named(tmp_path: Path) -> None:
    _, problems = Settings.read(
        {
            "HOSTWRIGHT_ACME_DIRECTORY": "http://ca.test/dir",
            "HOSTWRIGHT_ACME_EMAIL": "ops at provider",
            "HOSTWRIGHT_ACME_CA_BUNDLE": str(tmp_path / "missing.pem"),
            "HOSTWRIGHT_ACME_PROFILE": "short lived; rm",
        }
    )
    assert problems == [
        "HOSTWRIGHT_ACME_DIRECTORY must be an https:// URL (an ACME directory)",
        "HOSTWRIGHT_ACME_EMAIL is not a mail address: 'ops at provider'",
        f"HOSTWRIGHT_ACME_CA_BUNDLE names no file: {tmp_path / 'missing.pem'}",
        "HOSTWRIGHT_ACME_PROFILE is not a profile name: 'short lived; rm'",
    ]
