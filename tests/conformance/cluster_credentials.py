"""Credentials for a secured test cluster, made with the raftlock binary
the way an operator makes them (docs/security.md):
``raftlock certs init``, ``raftlock certs node ID --host 127.0.0.1`` per
node, and ``raftlock auth add NAME --role ROLE`` per principal, each token
read from stdout (where it is printed once) and kept in a 0600 file.

Shared by the conformance suite (support.py), the gateway suite (through
support.py) and the Python client's suite (crates/raftlock-py/tests): it
uses only the standard library, so each suite's virtualenv can import it.

``RAFTLOCK_TEST_INSECURE=1`` runs the suites plain (``--insecure``):
:func:`make_credentials` then gives ``None`` and the flag helpers say
``--insecure``.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

#: Whether the suites run their clusters without TLS and tokens.
INSECURE = os.environ.get("RAFTLOCK_TEST_INSECURE") == "1"

#: Every suite's principals: an admin, two lock principals (so that one can
#: be seen to be refused another's sessions) and a read-only one.
PRINCIPALS: Dict[str, str] = {
    "admin": "admin",
    "alice": "lock",
    "bob": "lock",
    "reader": "read",
}

#: The principal a suite's clients are unless a test says otherwise.
DEFAULT_PRINCIPAL = "alice"

#: A lock principal that may also authenticate with a client certificate
#: (``auth add --client-cert``), and has one, ``client-carol.pem``.
CERT_PRINCIPAL = "carol"

# What `raftlock auth add` prints: `rlt_` and 32 random bytes in URL-safe base64.
TOKEN = re.compile(r"rlt_[A-Za-z0-9_-]{43}")

# Client-side environment that would otherwise choose a transport for the
# processes a suite starts (the CLI, the gateway, Python children): the
# suites say what they want with flags and arguments, never by inheritance.
CLIENT_ENV_VARS = (
    "RAFTLOCK_CA", "RAFTLOCK_AUTH_TOKEN_FILE", "RAFTLOCK_CERT", "RAFTLOCK_KEY",
    "RAFTLOCK_INSECURE",
)


class ClusterCredentials:
    """A CA, a certificate per node and the principals of
    :data:`PRINCIPALS`, all under ``directory`` (which is created)."""

    def __init__(self, binary: Path, directory: Path, node_ids: Iterable[int]) -> None:
        self.bin = binary
        self.dir = directory
        self.auth_file = directory / "auth.toml"
        self._run("certs", "init", "--dir", str(directory))
        for node_id in node_ids:
            self.issue_node(node_id)
        self.tokens: Dict[str, str] = {
            name: self.add_principal(name, role) for name, role in PRINCIPALS.items()
        }
        self.tokens[CERT_PRINCIPAL] = self.add_principal(CERT_PRINCIPAL, "lock", client_cert=True)
        self.issue_client(CERT_PRINCIPAL)

    def _run(self, *args: str) -> str:
        done = subprocess.run(
            [str(self.bin), *args], capture_output=True, text=True, timeout=60,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"`raftlock {' '.join(args)}` exited {done.returncode}: {done.stderr.strip()}"
            )
        return done.stdout

    def issue_node(self, node_id: int) -> Tuple[Path, Path]:
        """Node ``node_id``'s certificate and key (a new one if missing)."""
        cert, key = self.node_files(node_id)
        if not cert.exists():
            self._run("certs", "node", str(node_id), "--host", "127.0.0.1",
                      "--dir", str(self.dir))
        return cert, key

    def issue_client(self, name: str) -> Tuple[Path, Path]:
        """A client certificate for ``raftlock://client/<name>``."""
        cert, key = self.dir / f"client-{name}.pem", self.dir / f"client-{name}-key.pem"
        if not cert.exists():
            self._run("certs", "client", name, "--dir", str(self.dir))
        return cert, key

    def add_principal(self, name: str, role: str, client_cert: bool = False) -> str:
        """Adds ``name`` to the auth file; returns its token, also kept in
        :meth:`token_file`."""
        out = self._run("auth", "add", name, "--role", role, "--file", str(self.auth_file),
                        *(["--client-cert"] if client_cert else []))
        token = out.strip()
        if not TOKEN.fullmatch(token):
            raise RuntimeError(f"`raftlock auth add {name}` printed {out!r}, not one token")
        fd = os.open(self.token_file(name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        return token

    @property
    def ca_file(self) -> Path:
        return self.dir / "ca.pem"

    def ca_pem(self) -> bytes:
        return self.ca_file.read_bytes()

    def token_file(self, name: str) -> Path:
        return self.dir / f"{name}.token"

    def node_files(self, node_id: int) -> Tuple[Path, Path]:
        return self.dir / f"node-{node_id}.pem", self.dir / f"node-{node_id}-key.pem"

    def server_flags(self, node_id: int) -> List[str]:
        cert, key = self.issue_node(node_id)
        return [
            "--tls-cert", str(cert), "--tls-key", str(key), "--tls-ca", str(self.ca_file),
            "--auth-file", str(self.auth_file),
        ]

    def client_flags(self, principal: str) -> List[str]:
        return ["--ca", str(self.ca_file), "--auth-token-file", str(self.token_file(principal))]

    def client_kwargs(self, principal: str) -> Dict[str, str]:
        """Arguments for the Python ``raftlock.Client``."""
        return {"ca": str(self.ca_file), "token_file": str(self.token_file(principal))}

    def client_env(self, principal: str) -> Dict[str, str]:
        return {"RAFTLOCK_CA": str(self.ca_file),
                "RAFTLOCK_AUTH_TOKEN_FILE": str(self.token_file(principal))}


def make_credentials(
    binary: Path, directory: Path, node_ids: Iterable[int]
) -> Optional[ClusterCredentials]:
    """Credentials in ``directory``, or None when the suites run insecure."""
    return None if INSECURE else ClusterCredentials(binary, directory, node_ids)


def server_flags(credentials: Optional[ClusterCredentials], node_id: int) -> List[str]:
    """What `raftlock server` needs to serve securely, or ``--insecure``."""
    return ["--insecure"] if credentials is None else credentials.server_flags(node_id)


def client_flags(credentials: Optional[ClusterCredentials],
                 principal: str = DEFAULT_PRINCIPAL) -> List[str]:
    """What a client command of the CLI (status, locks, gateway, ...)
    needs to call the cluster as ``principal``, or ``--insecure``."""
    return ["--insecure"] if credentials is None else credentials.client_flags(principal)


def client_kwargs(credentials: Optional[ClusterCredentials],
                  principal: str = DEFAULT_PRINCIPAL) -> Dict[str, object]:
    """Arguments for the Python ``raftlock.Client``."""
    return {"insecure": True} if credentials is None else credentials.client_kwargs(principal)


def clean_env() -> Dict[str, str]:
    """The environment for a process the suite gives its transport with
    flags or arguments: the caller's, without client transport settings."""
    return {k: v for k, v in os.environ.items() if k not in CLIENT_ENV_VARS}


def client_env(credentials: Optional[ClusterCredentials],
               principal: str = DEFAULT_PRINCIPAL) -> Dict[str, str]:
    """The environment for a process that finds its transport in the
    environment (an example, a child process): :func:`clean_env` plus the
    settings for ``principal`` (``RAFTLOCK_INSECURE=1`` when insecure)."""
    env = clean_env()
    if credentials is None:
        env["RAFTLOCK_INSECURE"] = "1"
    else:
        env.update(credentials.client_env(principal))
    return env
