"""The keys that sign and verify access tokens, and the one algorithm they are pinned to.

HS256 with a shared secret by default: one process or replicas sharing the secret. As an
option, EdDSA (Ed25519) or RS256 with a private key in a PEM file: then other services can
verify Riverbed's tokens from ``/.well-known/jwks.json`` without holding a secret, and keys
rotate by key id: sign with the new private key while the old public keys (a PEM bundle) still
verify the tokens they signed until those expire.

Whatever the configuration, one algorithm is accepted: a token naming another (``none``, or
HS256 signed with a public key, the classic confusion) is refused before its signature is
looked at, and so is one whose key id is not among the verifying keys.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from jwt.algorithms import OKPAlgorithm, RSAAlgorithm

from riverbed.core.errors import RiverbedError

SYMMETRIC = "HS256"
ASYMMETRIC = ("EdDSA", "RS256")
ALGORITHMS = (SYMMETRIC, *ASYMMETRIC)


class KeyProblem(RiverbedError):
    """Signing keys that cannot be used as configured."""


def _public_id(public_key: Any) -> str:
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()[:16]


@dataclass(frozen=True)
class SigningKeys:
    algorithm: str
    signing_key: Any  # the HMAC secret (bytes) or a private key
    key_id: str
    verifying: dict[str, Any] = field(default_factory=dict)  # key id -> secret or public key

    @classmethod
    def hmac(cls, secret: bytes) -> SigningKeys:
        # Names the secret without revealing it; a rotated secret gets a new id.
        kid = hashlib.sha256(b"riverbed kid " + secret).hexdigest()[:16]
        return cls(SYMMETRIC, secret, kid, {kid: secret})

    @classmethod
    def from_pem(cls, private_pem: bytes, older_public_pems: bytes = b"") -> SigningKeys:
        """A private key (Ed25519 for EdDSA, RSA of 2048 bits or more for RS256) and any older
        public keys that still verify."""
        private = serialization.load_pem_private_key(private_pem, password=None)
        if isinstance(private, ed25519.Ed25519PrivateKey):
            algorithm = "EdDSA"
        elif isinstance(private, rsa.RSAPrivateKey):
            if private.key_size < 2048:
                raise KeyProblem(f"an RSA key of {private.key_size} bits is too small (2048+)")
            algorithm = "RS256"
        else:
            raise KeyProblem("the signing key must be Ed25519 (EdDSA) or RSA (RS256)")
        public = private.public_key()
        verifying: dict[str, Any] = {_public_id(public): public}
        for pem in _pem_blocks(older_public_pems):
            older = serialization.load_pem_public_key(pem)
            if not _same_kind(older, public):
                raise KeyProblem("an older public key is not of the signing key's kind")
            verifying[_public_id(older)] = older
        return cls(algorithm, private, _public_id(public), verifying)

    def jwks(self) -> list[dict[str, Any]]:
        """The public keys as a JSON Web Key Set (empty for a shared secret)."""
        if self.algorithm == SYMMETRIC:
            return []
        exporter = OKPAlgorithm if self.algorithm == "EdDSA" else RSAAlgorithm
        keys = []
        for kid, public in self.verifying.items():
            jwk = exporter.to_jwk(public, as_dict=True)
            keys.append({**jwk, "kid": kid, "alg": self.algorithm, "use": "sig"})
        return keys


def _same_kind(one: Any, other: Any) -> bool:
    kinds = (ed25519.Ed25519PublicKey, rsa.RSAPublicKey)
    return any(isinstance(one, kind) and isinstance(other, kind) for kind in kinds)


def _pem_blocks(bundle: bytes) -> list[bytes]:
    blocks, current = [], []
    for line in bundle.splitlines(keepends=True):
        current.append(line)
        if line.startswith(b"-----END"):
            blocks.append(b"".join(current))
            current = []
    return blocks


def load_asymmetric(private_key_file: Path, public_keys_file: Path | None) -> SigningKeys:
    older = public_keys_file.read_bytes() if public_keys_file is not None else b""
    return SigningKeys.from_pem(private_key_file.read_bytes(), older)
