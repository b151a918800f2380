"""Who may use `alprd web`: password hashes, the credentials file, API tokens and
signed session cookies (pure: no server)."""

import pytest

from alprd.web import auth


def test_a_password_checks_only_against_its_own_hash():
    stored = auth.hash_password("correct horse")
    assert stored.startswith("scrypt$16384$8$1$")
    assert auth.check_password("correct horse", stored)
    assert not auth.check_password("correct hors", stored)
    assert not auth.check_password("x", "scrypt$garbage")
    assert auth.hash_password("same") != auth.hash_password("same")  # salted


def test_the_credentials_file_round_trips_and_bad_lines_name_their_place(tmp_path):
    path = tmp_path / "web-users"
    auth.write_entry(path, "user", "ana", auth.hash_password("password-1"))
    token, stored = auth.new_token()
    auth.write_entry(path, "token", "ha", stored)
    auth.write_entry(path, "user", "ana", auth.hash_password("password-2"))  # replaced
    assert path.stat().st_mode & 0o777 == 0o600
    creds = auth.read_file(path)
    assert list(creds.users) == ["ana"] and creds
    assert creds.check_password("ana", "password-2") and not creds.check_password(
        "ana", "password-1"
    )
    assert not creds.check_password("bob", "password-2")
    assert creds.check_token(token) == "ha" and creds.check_token(token + "x") is None
    assert not auth.read_file(None)
    path.write_text("# comment\n\nuser:ana:plain-text-password\n")
    with pytest.raises(auth.CredentialsError, match=r"web-users:3: user 'ana': not a hash"):
        auth.read_file(path)
    path.write_text("ana:secret\n")
    with pytest.raises(auth.CredentialsError, match=r"web-users:1: expected user:<name>"):
        auth.read_file(path)
    with pytest.raises(auth.CredentialsError, match="a name is 1-64"):
        auth.write_entry(path, "user", "a b", "scrypt$")


def test_a_session_cookie_is_the_user_until_it_expires_and_cannot_be_forged():
    sessions = auth.Sessions.fresh(3600)
    cookie = sessions.issue("ana.b", now=1000.0)
    assert sessions.user(cookie, now=1000.0 + 3599) == "ana.b"
    assert sessions.user(cookie, now=1000.0 + 3601) is None  # expired
    user, expiry, mac = cookie.rsplit(".", 2)
    assert sessions.user(f"bob.{expiry}.{mac}", now=1000.0) is None  # another user
    assert sessions.user(f"{user}.{int(expiry) + 9999}.{mac}", now=1000.0) is None  # longer
    assert auth.Sessions.fresh(3600).user(cookie, now=1000.0) is None  # another start
    assert sessions.user("garbage", now=0) is None


def test_the_users_file_is_found_where_the_setting_systemd_or_passwd_put_it(tmp_path):
    beside = tmp_path / "state"
    beside.mkdir()
    assert auth.locate(None, beside, env={}) is None
    (beside / "web-users").write_text("")
    assert auth.locate(None, beside, env={}) == beside / "web-users"
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "web-users").write_text("")
    assert (
        auth.locate(None, beside, env={"CREDENTIALS_DIRECTORY": str(creds)}) == creds / "web-users"
    )
    assert auth.locate(tmp_path / "x", beside, env={}) == tmp_path / "x"
