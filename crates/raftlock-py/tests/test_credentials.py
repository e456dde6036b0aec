"""How a Client is given credentials (``ca``, ``token_file``, ``cert``,
``key``, ``insecure``) or finds them (``RAFTLOCK_*``, the profile
directory), and the errors that say what to fix: credentials that cannot be
used fail when the client is made, a CA that did not sign the nodes fails
the first call at once, and a token never shows in a message."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

import raftlock

from conftest import raftlock_bin

SECRET = "rlt_python_secret_value"


def _file(path: Path, text: str, mode: int) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    return path


def _ca(directory: Path) -> Path:
    """A CA of its own (one that signed no node of any test cluster)."""
    subprocess.run(
        [str(raftlock_bin()), "certs", "init", "--dir", str(directory)],
        check=True,
        capture_output=True,
    )
    return directory / "ca.pem"


@pytest.fixture
def no_credentials_env(monkeypatch, tmp_path):
    """No RAFTLOCK_* credentials and an empty profile directory."""
    for name in (
        "RAFTLOCK_CA",
        "RAFTLOCK_AUTH_TOKEN_FILE",
        "RAFTLOCK_CERT",
        "RAFTLOCK_KEY",
        "RAFTLOCK_INSECURE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RAFTLOCK_CONFIG_DIR", str(tmp_path / "empty-profile"))


def test_a_token_file_others_can_read_is_refused_without_showing_it(no_credentials_env, tmp_path):
    ca = _ca(tmp_path / "ca")
    token = _file(tmp_path / "token", SECRET, 0o644)
    with pytest.raises(raftlock.CredentialsError) as error:
        raftlock.Client(["127.0.0.1:1"], ca=ca, token_file=token)
    assert "chmod 600" in str(error.value)
    assert str(token) in str(error.value)
    assert SECRET not in str(error.value)


def test_unusable_combinations_fail_when_the_client_is_made(no_credentials_env, tmp_path):
    ca = _ca(tmp_path / "ca")
    with pytest.raises(raftlock.CredentialsError, match="--insecure"):
        raftlock.Client(["127.0.0.1:1"], ca=ca, insecure=True)
    with pytest.raises(raftlock.CredentialsError, match="no-such-ca.pem"):
        raftlock.Client(["127.0.0.1:1"], ca=tmp_path / "no-such-ca.pem")
    with pytest.raises(raftlock.CredentialsError, match="--key"):
        raftlock.Client(["127.0.0.1:1"], ca=ca, cert=ca)
    token = _file(tmp_path / "token", SECRET, 0o600)
    with pytest.raises(raftlock.CredentialsError, match="CA"):
        raftlock.Client(["127.0.0.1:1"], token_file=token)


def test_the_environment_and_the_profile_are_read_when_nothing_is_given(
    no_credentials_env, monkeypatch, tmp_path
):
    profile = tmp_path / "profile"
    _ca(profile)
    _file(profile / "token", SECRET, 0o640)
    monkeypatch.setenv("RAFTLOCK_CONFIG_DIR", str(profile))
    # The profile is found, and its token file refused.
    with pytest.raises(raftlock.CredentialsError, match="chmod 600"):
        raftlock.Client(["127.0.0.1:1"])
    # RAFTLOCK_INSECURE=1 skips it; so does insecure=True.
    monkeypatch.setenv("RAFTLOCK_INSECURE", "1")
    raftlock.Client(["127.0.0.1:1"])
    monkeypatch.delenv("RAFTLOCK_INSECURE")
    raftlock.Client(["127.0.0.1:1"], insecure=True)
    # RAFTLOCK_AUTH_TOKEN_FILE wins over the profile's token.
    good = _file(tmp_path / "good-token", SECRET, 0o600)
    monkeypatch.setenv("RAFTLOCK_AUTH_TOKEN_FILE", str(good))
    raftlock.Client(["127.0.0.1:1"])


def test_a_ca_that_signed_no_node_fails_the_first_call_at_once(
    no_credentials_env, cluster, tmp_path
):
    ca = _ca(tmp_path / "ca")
    token = _file(tmp_path / "token", SECRET, 0o600)
    client = raftlock.Client(cluster.endpoints, ca=ca, token_file=token, retry_for=30.0)
    started = time.monotonic()
    with pytest.raises(raftlock.TlsError) as error:
        client.lock_info("anything")
    assert time.monotonic() - started < 5.0, "retried instead of failing at once"
    assert SECRET not in str(error.value)
    assert isinstance(error.value, raftlock.RaftlockError)
