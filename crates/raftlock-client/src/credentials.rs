//! How a client proves who it is and checks who it talks to: plain text,
//! or TLS against the cluster's CA with a bearer token and/or a client
//! certificate, and where those are found when nobody says.
//!
//! Where a client looks, first match wins:
//! 1. what the program passes ([`Transport::Tls`] / [`Transport::Plain`]);
//! 2. the environment: `RAFTLOCK_INSECURE=1` for plain text, else
//!    `RAFTLOCK_CA`, `RAFTLOCK_AUTH_TOKEN_FILE`, `RAFTLOCK_CERT` +
//!    `RAFTLOCK_KEY`;
//! 3. the profile directory ([`profile_dir`]), which `raftlock dev` fills:
//!    `ca.pem`, `token`, and optionally `client.pem` + `client-key.pem`;
//! 4. plain text.

use std::fmt;
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The CA certificate in a profile directory.
pub const PROFILE_CA: &str = "ca.pem";
/// The bearer token in a profile directory (mode 0600).
pub const PROFILE_TOKEN: &str = "token";
/// An optional client certificate and its key in a profile directory.
pub const PROFILE_CERT: &str = "client.pem";
pub const PROFILE_KEY: &str = "client-key.pem";

/// How a client reaches the cluster.
#[derive(Clone, Default)]
pub enum Transport {
    /// Whatever the environment and the profile directory say
    /// ([`Transport::discover`]); plain text if they say nothing.
    #[default]
    Discover,
    /// Plain text (a node started with `--insecure`).
    Plain,
    /// TLS, checking the nodes' certificates against a CA.
    Tls(Credentials),
}

/// What a TLS client presents and trusts.
#[derive(Clone)]
pub struct Credentials {
    /// The cluster CA (PEM) that signed the nodes' certificates.
    pub ca: PathBuf,
    /// A bearer token for the node's auth file.
    pub token: Option<Token>,
    /// A client certificate and its key (PEM), the other way to
    /// authenticate.
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// A bearer token: shown as `Token(..)`, so it cannot end up in a log by
/// way of a Debug print.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn new(token: impl Into<String>) -> Token {
        Token(token.into())
    }

    /// The token itself, for the `authorization` header and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(..)")
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("ca", &self.ca)
            .field("token", &self.token)
            .field("identity", &self.identity)
            .finish()
    }
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transport::Discover => f.write_str("Discover"),
            Transport::Plain => f.write_str("Plain"),
            Transport::Tls(c) => f.debug_tuple("Tls").field(c).finish(),
        }
    }
}

/// The profile directory: `$RAFTLOCK_CONFIG_DIR`, else
/// `$XDG_CONFIG_HOME/raftlock`, else `$HOME/.config/raftlock`.
pub fn profile_dir() -> Option<PathBuf> {
    let from_env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = from_env("RAFTLOCK_CONFIG_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = from_env("XDG_CONFIG_HOME") {
        return Some(PathBuf::from(dir).join("raftlock"));
    }
    from_env("HOME").map(|home| PathBuf::from(home).join(".config").join("raftlock"))
}

/// Writes a profile into `dir` (created 0700): a copy of the CA at
/// `ca_pem` and `token` (0600), so clients on this machine find both
/// without flags. Replaces a profile already there.
pub fn write_profile(dir: &Path, ca_pem: &Path, token: &str) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    std::fs::copy(ca_pem, dir.join(PROFILE_CA))?;
    write_private(&dir.join(PROFILE_TOKEN), token.as_bytes())
}

/// Writes `bytes` to `path` readable by its owner only, from the first
/// byte on (the file is never briefly open to others).
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let temp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&temp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_is_private_and_the_token_never_prints() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("some-ca.pem");
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").unwrap();
        let profile = dir.path().join("profile");
        write_profile(&profile, &ca, "rlt_secret").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&profile), 0o700);
        assert_eq!(mode(&profile.join(PROFILE_TOKEN)), 0o600);
        assert_eq!(
            crate::read_token_file(&profile.join(PROFILE_TOKEN)).unwrap(),
            "rlt_secret"
        );
        let creds = Credentials {
            ca,
            token: Some(Token::new("rlt_secret")),
            identity: None,
        };
        let shown = format!("{:?}", Transport::Tls(creds));
        assert!(!shown.contains("rlt_secret"), "{shown}");
    }
}
