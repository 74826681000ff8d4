"""Secrets at rest: what the control plane must be able to read back (webhook signing secrets,
SMTP passwords, push keys) is sealed with AES-256-GCM before it reaches the database.

A sealed value reads ``v1:<key id>:<base64 of nonce + ciphertext + tag>``. The nonce is 96
random bits per seal; the associated data names where the value lives (``channel:42:secret``),
so a sealed value copied into another row or column does not open. The key (32 bytes) comes
from ``RIVERBED_SECRETS_KEY`` or ``RIVERBED_SECRETS_KEY_FILE`` (hex or base64); keys listed in
``RIVERBED_SECRETS_OLD_KEYS`` still open what they sealed, so the key can be rotated by
re-sealing at leisure. On loopback without one, a key is generated into the data dir, as the
JWT secret is; elsewhere, starting without one is refused.

Passwords and API keys are not sealed but hashed (``control.users``, ``control.keys``): they
never need to be read back.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from control.private_files import private_once
from riverbed.core.errors import RiverbedError
from riverbed.core.settings import Settings

VERSION = "v1"
KEY_BYTES = 32
NONCE_BYTES = 12
KEY_FILE = "secrets.key"


class SealError(RiverbedError):
    """A sealed value that does not open: tampered, moved, or sealed under an unknown key."""


class MissingKey(RiverbedError):
    """No usable sealing key where one is required."""


def key_id(key: bytes) -> str:
    """Names a key without revealing it, so a sealed value says which key opens it."""
    return hashlib.sha256(b"riverbed sealing key " + key).hexdigest()[:8]


def parse_key(text: str) -> bytes:
    """32 bytes given as 64 hex digits or as base64."""
    text = text.strip()
    try:
        key = (
            bytes.fromhex(text)
            if len(text) == 2 * KEY_BYTES
            else base64.b64decode(text, validate=True)
        )
    except (ValueError, binascii.Error):
        raise MissingKey("a sealing key is 32 bytes as hex or base64") from None
    if len(key) != KEY_BYTES:
        raise MissingKey(f"a sealing key is {KEY_BYTES} bytes, not {len(key)}")
    return key


@dataclass(frozen=True)
class SecretBox:
    key: bytes
    old_keys: tuple[bytes, ...] = ()

    def seal(self, plaintext: str, context: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self.key).encrypt(nonce, plaintext.encode(), context.encode())
        body = base64.b64encode(nonce + sealed).decode()
        return f"{VERSION}:{key_id(self.key)}:{body}"

    def open(self, sealed: str, context: str) -> str:
        version, _, rest = sealed.partition(":")
        kid, _, body = rest.partition(":")
        if version != VERSION or not body:
            raise SealError("not a sealed value")
        key = next((k for k in (self.key, *self.old_keys) if key_id(k) == kid), None)
        if key is None:
            raise SealError(f"sealed under key {kid}, which is not configured")
        try:
            raw = base64.b64decode(body, validate=True)
            opened = AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode())
        except (binascii.Error, ValueError, InvalidTag):
            raise SealError("the sealed value was altered or belongs elsewhere") from None
        return opened.decode()

    def needs_reseal(self, sealed: str) -> bool:
        """Sealed under an old key: seal it again under the current one."""
        return sealed.split(":", 2)[1:2] != [key_id(self.key)]


def secret_box(settings: Settings) -> SecretBox:
    """The box of ``settings``: the configured key; on loopback without one, a generated one
    kept in the data dir; otherwise :class:`MissingKey`."""
    old = tuple(parse_key(k) for k in settings.secrets_old_keys.split(",") if k.strip())
    if settings.secrets_key is not None:
        return SecretBox(parse_key(settings.secrets_key.get_secret_value()), old)
    if settings.secrets_key_file is not None:
        return SecretBox(parse_key(settings.secrets_key_file.read_text()), old)
    if not settings.on_loopback:
        raise MissingKey(
            f"listening on {settings.host}, Riverbed needs a key to seal stored secrets with: "
            "set RIVERBED_SECRETS_KEY_FILE (or RIVERBED_SECRETS_KEY) to 32 random bytes, e.g. "
            "openssl rand -hex 32"
        )
    generated = private_once(settings.data_dir / KEY_FILE, os.urandom(KEY_BYTES).hex() + "\n")
    return SecretBox(parse_key(generated), old)
