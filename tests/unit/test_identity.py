"""Users, passwords, access tokens and refresh tokens, attacked the ways they are attacked.

Real stores (SQLite, migrated) and real argon2id; tokens forged with PyJWT and cryptography as
an attacker would forge them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from argon2 import PasswordHasher
from argon2.profiles import CHEAPEST
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from sqlalchemy import select, update

from control.db import database_url, open_store
from control.models import User
from control.signing import KeyProblem, SigningKeys
from control.tokens import (
    AccessTokens,
    InvalidToken,
    MissingSecret,
    RefreshTokens,
    signing_keys,
    signing_secret,
)
from control.users import AccountLocked, LoginFailed, UserInfo, Users
from riverbed.cli import main
from riverbed.core.errors import Invalid
from riverbed.core.settings import Settings

SECRET = os.urandom(32)
PASSWORD = "correct horse battery staple"


@pytest.fixture()
def sessions(tmp_path: Path) -> Any:
    return open_store(database_url(tmp_path, None))


@pytest.fixture()
def users(sessions: Any) -> Users:
    return Users(sessions)


@pytest.fixture()
def alice(users: Users) -> UserInfo:
    return users.create("alice", PASSWORD, ["analyst"])


def stored_hash(users: Users, name: str) -> str:
    with users.sessions.begin() as session:
        return str(session.scalar(select(User.password_hash).where(User.username == name)))


# --- passwords -------------------------------------------------------------------------------


def test_passwords_are_kept_as_argon2id_at_least_as_strong_as_owasp_asks(
    users: Users, alice: UserInfo
) -> None:
    stored = stored_hash(users, "alice")
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    params = dict(p.split("=") for p in stored.split("$")[3].split(","))
    assert int(params["m"]) >= 19_456 and int(params["t"]) >= 2  # OWASP: 19 MiB, 2 passes


def test_the_right_password_logs_in_and_a_wrong_one_or_an_unknown_name_does_not(
    users: Users, alice: UserInfo
) -> None:
    assert users.authenticate("alice", PASSWORD).id == alice.id
    with pytest.raises(LoginFailed) as wrong:
        users.authenticate("alice", PASSWORD + "!")
    with pytest.raises(LoginFailed) as unknown:
        users.authenticate("mallory", PASSWORD)
    assert wrong.value.detail == unknown.value.detail  # which one is not said


def test_repeated_failures_lock_the_account_even_against_the_right_password(
    users: Users, alice: UserInfo
) -> None:
    for _ in range(5):
        with pytest.raises(LoginFailed):
            users.authenticate("alice", "a wrong password!")
    with pytest.raises(AccountLocked) as locked:
        users.authenticate("alice", PASSWORD)
    assert 1 <= locked.value.retry_after <= 30
    assert locked.value.headers()["Retry-After"] == str(locked.value.retry_after)
    # The lock ran out (as time would make it): the right password works and resets the count.
    with users.sessions.begin() as session:
        session.execute(update(User).values(locked_until=datetime.now(UTC) - timedelta(1)))
    users.authenticate("alice", PASSWORD)
    with users.sessions.begin() as session:
        assert session.scalar(select(User.failed_logins)) == 0


def test_each_further_failure_doubles_the_lock(users: Users, alice: UserInfo) -> None:
    locks = []
    for _ in range(7):
        with users.sessions.begin() as session:
            session.execute(update(User).values(locked_until=None))
        with pytest.raises(LoginFailed):
            users.authenticate("alice", "a wrong password!")
        with users.sessions.begin() as session:
            until = session.scalar(select(User.locked_until))
            locks.append(None if until is None else until.replace(tzinfo=UTC))
    assert locks[:4] == [None] * 4
    spans = [(until - datetime.now(UTC)).total_seconds() for until in locks[4:] if until]
    assert 25 < spans[0] <= 30 and 55 < spans[1] <= 60 and 115 < spans[2] <= 120


def test_a_disabled_account_cannot_log_in(users: Users, alice: UserInfo) -> None:
    users.update("alice", disabled=True)
    with pytest.raises(LoginFailed):
        users.authenticate("alice", PASSWORD)


def test_a_weaker_hash_is_upgraded_at_the_next_login(sessions: Any) -> None:
    weak = Users(sessions, PasswordHasher.from_parameters(CHEAPEST))
    weak.create("bob", PASSWORD, ["viewer"])
    strong = Users(sessions)
    before = stored_hash(strong, "bob")
    strong.authenticate("bob", PASSWORD)
    after = stored_hash(strong, "bob")
    assert after != before and not strong.hasher.check_needs_rehash(after)


@pytest.mark.parametrize(
    ("username", "password", "roles"),
    [
        ("carol", "short", ["viewer"]),
        ("carol", "x" * 1025, ["viewer"]),
        ("-carol", PASSWORD, ["viewer"]),
        ("carol", PASSWORD, ["root"]),
    ],
)
def test_names_passwords_and_roles_are_checked(
    users: Users, username: str, password: str, roles: list[str]
) -> None:
    with pytest.raises(Invalid):
        users.create(username, password, roles)


# --- access tokens ---------------------------------------------------------------------------


def segment(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def claims(**changes: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    base = {
        "iss": "riverbed",
        "aud": "riverbed-api",
        "sub": "1",
        "iat": now,
        "nbf": now,
        "exp": now + timedelta(minutes=5),
        "jti": "j1",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


TOKENS = AccessTokens(SECRET)
KID = {"kid": TOKENS.key_id}


def forged(payload: dict[str, Any], key: Any = SECRET, alg: str = "HS256") -> str:
    return jwt.encode(payload, key, alg, headers=KID)


def test_an_issued_token_verifies_as_its_user() -> None:
    user = UserInfo(7, "alice", ["analyst"], False, datetime.now(UTC), None)
    token, lifetime = TOKENS.issue(user)
    verified = TOKENS.verify(token)
    assert verified.user_id == 7 and lifetime == 15 * 60
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def _rsa_pem() -> tuple[Any, bytes]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


PRIVATE, PUBLIC_PEM = _rsa_pem()


def hs256_by_hand(payload: dict[str, Any], key: bytes) -> str:
    """HS256 signed without PyJWT, which refuses to use a PEM key as an HMAC secret."""
    numeric = {k: int(v.timestamp()) if isinstance(v, datetime) else v for k, v in payload.items()}
    signing_input = segment({"alg": "HS256", "typ": "JWT", **KID}) + "." + segment(numeric)
    mac = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


ATTACKS: dict[str, str] = {
    "alg none": segment({"alg": "none", "typ": "JWT", **KID})
    + "."
    + segment(
        {k: int(v.timestamp()) if isinstance(v, datetime) else v for k, v in claims().items()}
    )
    + ".",
    "RS256 instead of HS256": forged(claims(), PRIVATE, "RS256"),
    # The classic confusion: the server's public key used as the HMAC secret.
    "HS256 keyed with a public key": hs256_by_hand(claims(), PUBLIC_PEM),
    "another secret": forged(claims(), os.urandom(32)),
    "expired": forged(claims(exp=datetime.now(UTC) - timedelta(minutes=1))),
    "not yet valid": forged(claims(nbf=datetime.now(UTC) + timedelta(minutes=1))),
    "wrong audience": forged(claims(aud="another-api")),
    "wrong issuer": forged(claims(iss="https://evil.example")),
    "no expiry": forged(claims(exp=None)),
    "no token id": forged(claims(jti=None)),
    "unknown kid": jwt.encode(claims(), SECRET, "HS256", headers={"kid": "0" * 16}),
    "no kid": jwt.encode(claims(), SECRET, "HS256"),
    "not a JWT": "hello",
}


@pytest.mark.parametrize("attack", ATTACKS, ids=list(ATTACKS))
def test_forged_or_stale_tokens_are_refused(attack: str) -> None:
    with pytest.raises(InvalidToken):
        TOKENS.verify(ATTACKS[attack])


def test_a_tampered_payload_breaks_the_signature() -> None:
    token = forged(claims(sub="1"))
    header, _, signature = token.split(".")
    raised = segment({**claims(sub="2"), "iat": 0, "nbf": 0, "exp": 2_000_000_000})
    with pytest.raises(InvalidToken):
        TOKENS.verify(f"{header}.{raised}.{signature}")


@pytest.mark.parametrize("secret", [b"secret", b"changeme", os.urandom(31)])
def test_a_short_or_well_known_secret_is_refused(secret: bytes) -> None:
    with pytest.raises(MissingSecret):
        AccessTokens(secret)


def test_on_loopback_a_secret_is_generated_once_and_kept_private(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    first, again = signing_secret(settings), signing_secret(settings)
    assert first.generated is not None and first.value == again.value
    assert stat.S_IMODE(first.generated.stat().st_mode) == 0o600


def test_listening_on_a_network_needs_a_configured_secret(tmp_path: Path) -> None:
    with pytest.raises(MissingSecret, match="RIVERBED_JWT_SECRET_FILE"):
        signing_secret(Settings(data_dir=tmp_path, host="0.0.0.0"))
    path = tmp_path / "jwt"
    path.write_text(os.urandom(32).hex())
    configured = signing_secret(Settings(data_dir=tmp_path, host="0.0.0.0", jwt_secret_file=path))
    assert configured.generated is None
    with pytest.raises(MissingSecret):
        signing_secret(Settings(data_dir=tmp_path, host="0.0.0.0", jwt_secret="changeme"))


# --- refresh tokens --------------------------------------------------------------------------


def test_a_refresh_token_works_once_and_its_reuse_revokes_the_family(
    sessions: Any, alice: UserInfo
) -> None:
    refresh = RefreshTokens(sessions, grace=timedelta(0))
    first = refresh.issue(alice.id)
    user_id, second = refresh.rotate(first)
    assert user_id == alice.id and second != first
    with pytest.raises(InvalidToken, match="already used"):
        refresh.rotate(first)  # a thief replays the old one...
    with pytest.raises(InvalidToken):
        refresh.rotate(second)  # ...and the legitimate holder's current one is dead too


def test_within_the_grace_a_lost_answer_can_be_retried(sessions: Any, alice: UserInfo) -> None:
    refresh = RefreshTokens(sessions, grace=timedelta(minutes=1))
    first = refresh.issue(alice.id)
    _, second = refresh.rotate(first)
    _, retried = refresh.rotate(first)  # the answer carrying `second` was lost
    assert retried not in (first, second)
    refresh.rotate(retried)


def test_logout_and_a_password_change_end_every_session(
    sessions: Any, users: Users, alice: UserInfo
) -> None:
    refresh = RefreshTokens(sessions)
    one, two = refresh.issue(alice.id), refresh.issue(alice.id)
    refresh.revoke(one)
    with pytest.raises(InvalidToken):
        refresh.rotate(one)
    users.change_password(alice.id, PASSWORD, "a brand new long password")
    with pytest.raises(InvalidToken):
        refresh.rotate(two)
    with pytest.raises(Invalid):
        users.change_password(alice.id, "not the password", "another long password")


def test_refresh_tokens_are_stored_as_digests(sessions: Any, alice: UserInfo) -> None:
    from control.models import RefreshToken

    token = RefreshTokens(sessions).issue(alice.id)
    with sessions.begin() as session:
        digests = session.scalars(select(RefreshToken.digest)).all()
    assert token not in digests and len(digests[0]) == 64


# --- the CLI ---------------------------------------------------------------------------------


def test_the_cli_creates_the_first_admin_and_manages_users(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["users", "--data-dir", str(tmp_path)]
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert main([*base, "create-admin", "--username", "root", "--password-stdin"]) == 0
    users = Users(open_store(database_url(tmp_path, None)))
    assert users.authenticate("root", PASSWORD).roles == ["admin"]
    assert users.has_admin()
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main([*base, "create", "--username", "x", "--role", "viewer", "--password-stdin"]) == 2
    assert "12" in capsys.readouterr().err
    assert main([*base, "disable", "root"]) == 0
    with pytest.raises(LoginFailed):
        users.authenticate("root", PASSWORD)
    assert main([*base, "set-roles", "root", "--role", "viewer"]) == 0
    assert main([*base, "list"]) == 0
    assert "root  disabled  roles=viewer" in capsys.readouterr().out


# --- asymmetric signing: EdDSA and RS256, JWKS, rotation -----------------------------------


def private_pem(key: Any) -> bytes:
    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def public_pem(key: Any) -> bytes:
    return bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


USER = UserInfo(7, "alice", ["analyst"], False, datetime.now(UTC), None)


@pytest.mark.parametrize(
    ("make", "algorithm", "kty"),
    [
        (ed25519.Ed25519PrivateKey.generate, "EdDSA", "OKP"),
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256", "RSA"),
    ],
)
def test_tokens_signed_with_a_private_key_verify_from_the_jwks_alone(
    make: Any, algorithm: str, kty: str
) -> None:
    tokens = AccessTokens(SigningKeys.from_pem(private_pem(make())))
    token, _ = tokens.issue(USER)
    assert jwt.get_unverified_header(token)["alg"] == algorithm
    assert tokens.verify(token).user_id == 7
    [jwk] = tokens.keys.jwks()
    assert jwk["kty"] == kty and jwk["kid"] == tokens.key_id and "d" not in jwk  # public only
    # Another service, holding only the published key, verifies the token.
    claims = jwt.decode(token, jwt.PyJWK(jwk).key, algorithms=[algorithm], audience="riverbed-api")
    assert claims["sub"] == "7"


def test_a_rotated_out_key_verifies_while_it_is_listed_and_not_after() -> None:
    old, new = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
    token, _ = AccessTokens(SigningKeys.from_pem(private_pem(old))).issue(USER)
    rotating = AccessTokens(SigningKeys.from_pem(private_pem(new), public_pem(old)))
    assert rotating.verify(token).user_id == 7
    assert len(rotating.keys.jwks()) == 2
    done = AccessTokens(SigningKeys.from_pem(private_pem(new)))
    with pytest.raises(InvalidToken, match="unknown key"):
        done.verify(token)


def test_with_eddsa_an_hs256_token_keyed_with_the_public_key_is_refused() -> None:
    private = ed25519.Ed25519PrivateKey.generate()
    tokens = AccessTokens(SigningKeys.from_pem(private_pem(private)))
    raw_public = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    numeric = {k: int(v.timestamp()) if isinstance(v, datetime) else v for k, v in claims().items()}
    head = segment({"alg": "HS256", "typ": "JWT", "kid": tokens.key_id}) + "." + segment(numeric)
    for key in (raw_public, public_pem(private)):
        mac = hmac.new(key, head.encode(), hashlib.sha256).digest()
        forged_token = head + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
        with pytest.raises(InvalidToken, match="EdDSA only"):
            tokens.verify(forged_token)


def test_weak_or_foreign_signing_keys_are_refused() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(KeyProblem, match="too small"):
        SigningKeys.from_pem(private_pem(small))
    with pytest.raises(KeyProblem):
        SigningKeys.from_pem(private_pem(ec.generate_private_key(ec.SECP256R1())))
    ed = ed25519.Ed25519PrivateKey.generate()
    big = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(KeyProblem, match="kind"):
        SigningKeys.from_pem(private_pem(ed), public_pem(big))


def test_settings_choose_the_asymmetric_keys(tmp_path: Path) -> None:
    key_file = tmp_path / "jwt.pem"
    key_file.write_bytes(private_pem(ed25519.Ed25519PrivateKey.generate()))
    keys, generated = signing_keys(
        Settings(data_dir=tmp_path, host="0.0.0.0", jwt_private_key_file=key_file)
    )
    assert keys.algorithm == "EdDSA" and generated is None
    hs, generated = signing_keys(Settings(data_dir=tmp_path))
    assert hs.algorithm == "HS256" and generated == tmp_path / "jwt.secret"
    assert hs.jwks() == []
