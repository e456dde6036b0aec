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

from conftest import free_ports, raftlock_bin

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


def _auth_add(auth_file: Path, name: str, role: str, token_file: Path) -> None:
    out = subprocess.run(
        [str(raftlock_bin()), "auth", "add", name, "--role", role, "--file", str(auth_file)],
        check=True,
        capture_output=True,
        text=True,
    )
    _file(token_file, out.stdout.strip(), 0o600)


@pytest.fixture
def secure_node(tmp_path, no_credentials_env):
    """One `raftlock server` with TLS and an auth file holding a `lock`
    principal and a `read` one; yields (endpoint, ca, tokens dir)."""
    creds = tmp_path / "credentials"
    bin_ = str(raftlock_bin())
    subprocess.run([bin_, "certs", "init", "--dir", str(creds)], check=True, capture_output=True)
    subprocess.run(
        [bin_, "certs", "node", "1", "--dir", str(creds)], check=True, capture_output=True
    )
    auth = tmp_path / "auth.toml"
    _auth_add(auth, "worker", "lock", tmp_path / "worker.token")
    _auth_add(auth, "viewer", "read", tmp_path / "viewer.token")
    client_port, peer_port = free_ports(2)
    endpoint, peer = f"127.0.0.1:{client_port}", f"127.0.0.1:{peer_port}"
    log = open(tmp_path / "node.log", "wb")
    node = subprocess.Popen(
        [
            bin_, "server", "--id", "1", "--listen", endpoint, "--peer-listen", peer,
            "--peers", f"1={peer}/{endpoint}", "--data-dir", str(tmp_path / "data"),
            "--tls-cert", str(creds / "node-1.pem"), "--tls-key", str(creds / "node-1-key.pem"),
            "--tls-ca", str(creds / "ca.pem"), "--auth-file", str(auth),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        probe = raftlock.Client(
            [endpoint], ca=creds / "ca.pem", token_file=tmp_path / "viewer.token", retry_for=1.0
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                probe.locks()
                break
            except raftlock.ClusterUnavailable:
                if time.monotonic() > deadline or node.poll() is not None:
                    raise AssertionError((tmp_path / "node.log").read_text())
                time.sleep(0.2)
        yield endpoint, creds / "ca.pem", tmp_path
    finally:
        node.kill()
        node.wait()
        log.close()


def test_a_secure_cluster_with_ca_and_token_file(secure_node):
    endpoint, ca, tokens = secure_node
    client = raftlock.Client([endpoint], ca=ca, token_file=tokens / "worker.token")
    with client.lock("py-secure") as held:
        assert held.token > 0
        assert client.lock_info("py-secure").holder.token == held.token
    client.close()
    viewer = raftlock.Client([endpoint], ca=ca, token_file=tokens / "viewer.token")
    assert viewer.locks() == []
    with pytest.raises(raftlock.PermissionDenied, match="viewer"):
        with viewer.lock("py-secure"):
            pass
    wrong = _file(tokens / "wrong.token", SECRET, 0o600)
    started = time.monotonic()
    with pytest.raises(raftlock.NotAuthenticated) as error:
        raftlock.Client([endpoint], ca=ca, token_file=wrong, retry_for=30.0).locks()
    assert time.monotonic() - started < 5.0
    assert SECRET not in str(error.value)
