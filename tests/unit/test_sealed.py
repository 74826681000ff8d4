"""Secrets at rest: AES-256-GCM sealing that does not open when altered, moved or rekeyed."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from control.sealed import MissingKey, SealError, SecretBox, parse_key, secret_box
from riverbed.core.settings import Settings

BOX = SecretBox(os.urandom(32))


def test_a_sealed_secret_opens_in_its_place_only() -> None:
    sealed = BOX.seal("hunter2-webhook-secret", "channel:1:secret")
    assert "hunter2" not in sealed and sealed.startswith("v1:")
    assert BOX.open(sealed, "channel:1:secret") == "hunter2-webhook-secret"
    with pytest.raises(SealError):
        BOX.open(sealed, "channel:2:secret")  # copied into another row


def test_each_seal_uses_a_fresh_nonce() -> None:
    assert BOX.seal("same", "c") != BOX.seal("same", "c")


def test_an_altered_value_does_not_open() -> None:
    sealed = BOX.seal("secret", "c")
    head, body = sealed.rsplit(":", 1)
    flipped = body[:-4] + ("AAAA" if body[-4:] != "AAAA" else "BBBB")
    for broken in (f"{head}:{flipped}", "v2" + sealed[2:], "plain text", f"{head}:!!"):
        with pytest.raises(SealError):
            BOX.open(broken, "c")


def test_old_keys_still_open_and_ask_for_a_reseal() -> None:
    old = SecretBox(os.urandom(32))
    sealed = old.seal("secret", "c")
    with pytest.raises(SealError, match="not configured"):
        BOX.open(sealed, "c")
    rotated = SecretBox(os.urandom(32), old_keys=(old.key,))
    assert rotated.open(sealed, "c") == "secret"
    assert rotated.needs_reseal(sealed) and not rotated.needs_reseal(rotated.seal("s", "c"))


@pytest.mark.parametrize("text", ["00" * 31, "not a key", "QUJD"])
def test_keys_must_be_32_bytes(text: str) -> None:
    with pytest.raises(MissingKey):
        parse_key(text)


def test_keys_come_from_the_environment_a_file_or_on_loopback_the_data_dir(
    tmp_path: Path,
) -> None:
    key = os.urandom(32)
    assert secret_box(Settings(data_dir=tmp_path, secrets_key=key.hex())).key == key
    path = tmp_path / "k"
    path.write_text(key.hex())
    assert secret_box(Settings(data_dir=tmp_path, secrets_key_file=path)).key == key
    generated = secret_box(Settings(data_dir=tmp_path))
    assert generated.key == secret_box(Settings(data_dir=tmp_path)).key
    assert stat.S_IMODE((tmp_path / "secrets.key").stat().st_mode) == 0o600
    with pytest.raises(MissingKey, match="RIVERBED_SECRETS_KEY_FILE"):
        secret_box(Settings(data_dir=tmp_path / "other", host="0.0.0.0"))
