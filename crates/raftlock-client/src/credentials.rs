//! How a client proves who it is and checks who it talks to: plain text,
//! or TLS against the cluster's CA with a bearer token and/or a client
//! certificate, and where those are found when nobody says.
//!
//! Where a client looks, first match wins:
//! 1. what the program passes ([`Transport::Tls`] / [`Transport::Plain`]);
//! 2. the environment: `RAFTLOCK_INSECURE=1` for plain text, else
//!    `RAFTLOCK_CA`, `RAFTLOCK_AUTH_TOKEN_FILE`, `RAFTLOCK_CERT` +
//!    `RAFTLOCK_KEY`;
//! 3. the profile directory ([`profile_dir`]), which `raftlock dev` and
//!    `scripts/cluster up` fill: `ca.pem`, `token`, and `client.pem` +
//!    `client-key.pem` (an admin's client certificate, which membership
//!    changes need: the peer port takes no token alone);
//! 4. plain text.
//!
//! Resolution is a pure function of what was given and an environment
//! passed in as a lookup ([`Transport::resolve`]), so it is tested without
//! touching the process environment.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::Error;

/// Environment variables a client reads when nothing is given.
pub const ENV_INSECURE: &str = "RAFTLOCK_INSECURE";
pub const ENV_CA: &str = "RAFTLOCK_CA";
pub const ENV_TOKEN_FILE: &str = "RAFTLOCK_AUTH_TOKEN_FILE";
pub const ENV_CERT: &str = "RAFTLOCK_CERT";
pub const ENV_KEY: &str = "RAFTLOCK_KEY";

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
    profile_dir_in(&process_env)
}

/// A lookup into the environment: the process's, or a test's map.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<OsString>;

/// The process environment, as an [`Env`].
pub fn process_env(name: &str) -> Option<OsString> {
    std::env::var_os(name)
}

/// [`profile_dir`] in the environment `env`.
pub fn profile_dir_in(env: Env) -> Option<PathBuf> {
    let from_env = |name: &str| env(name).filter(|v| !v.is_empty());
    if let Some(dir) = from_env("RAFTLOCK_CONFIG_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = from_env("XDG_CONFIG_HOME") {
        return Some(PathBuf::from(dir).join("raftlock"));
    }
    from_env("HOME").map(|home| PathBuf::from(home).join(".config").join("raftlock"))
}

/// What a program names itself (command-line flags, a Python client's
/// arguments). Anything given wins over the environment and the profile;
/// a gap (no CA with a token) is filled from them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Given {
    pub ca: Option<PathBuf>,
    pub token_file: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Plain text; nothing else may be given with it.
    pub insecure: bool,
}

impl Given {
    fn names_credentials(&self) -> bool {
        self.ca.is_some() || self.token_file.is_some() || self.cert.is_some() || self.key.is_some()
    }

    /// What the `RAFTLOCK_*` variables in `env` say.
    fn from_env(env: Env) -> Result<Given, Error> {
        let path = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        Ok(Given {
            ca: path(ENV_CA),
            token_file: path(ENV_TOKEN_FILE),
            cert: path(ENV_CERT),
            key: path(ENV_KEY),
            insecure: match env(ENV_INSECURE) {
                Some(value) => insecure_value(&value)?,
                None => false,
            },
        })
    }

    /// TLS with these files; a missing CA is taken from the profile.
    fn into_tls(self, profile: Option<&Path>) -> Result<Transport, Error> {
        let profile_ca = profile
            .map(|dir| dir.join(PROFILE_CA))
            .filter(|ca| ca.exists());
        let Some(ca) = self.ca.or(profile_ca) else {
            return Err(Error::Credentials(
                "a token file or client certificate needs the cluster's CA certificate: \
                 give --ca (RAFTLOCK_CA), or put ca.pem in the profile directory"
                    .into(),
            ));
        };
        let identity = match (self.cert, self.key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => return Err(Error::Credentials(
                "a client certificate needs both --cert (RAFTLOCK_CERT) and --key (RAFTLOCK_KEY)"
                    .into(),
            )),
        };
        let token = self.token_file.as_deref().map(token_from).transpose()?;
        Ok(Transport::Tls(Credentials {
            ca,
            token,
            identity,
        }))
    }
}

/// `RAFTLOCK_INSECURE`'s value: 1/true/yes/on or 0/false/no/off (or empty).
fn insecure_value(value: &std::ffi::OsStr) -> Result<bool, Error> {
    let text = value.to_string_lossy().trim().to_ascii_lowercase();
    match text.as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "" | "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(Error::Credentials(format!(
            "{ENV_INSECURE}={text:?}: expected 1 or 0 (true or false)"
        ))),
    }
}

/// The token in a token file, or a credentials error naming the file.
fn token_from(path: &Path) -> Result<Token, Error> {
    crate::read_token_file(path)
        .map(Token::new)
        .map_err(|e| Error::Credentials(format!("auth token file: {e}")))
}

/// The profile in `dir`, if it holds a CA: TLS with its token and client
/// certificate when those are there too.
fn from_profile(dir: &Path) -> Result<Option<Transport>, Error> {
    let ca = dir.join(PROFILE_CA);
    if !ca.exists() {
        return Ok(None);
    }
    let token_file = dir.join(PROFILE_TOKEN);
    let token = if token_file.exists() {
        Some(token_from(&token_file)?)
    } else {
        None
    };
    let (cert, key) = (dir.join(PROFILE_CERT), dir.join(PROFILE_KEY));
    let identity = (cert.exists() && key.exists()).then_some((cert, key));
    Ok(Some(Transport::Tls(Credentials {
        ca,
        token,
        identity,
    })))
}

impl Transport {
    /// This transport, with [`Transport::Discover`] resolved against the
    /// process environment and the profile directory.
    pub fn resolved(self) -> Result<Transport, Error> {
        match self {
            Transport::Discover => Transport::resolve(&Given::default(), &process_env),
            known => Ok(known),
        }
    }

    /// Plain or TLS, from what was `given`, else the environment `env`,
    /// else the profile directory it names, else plain text. Token files
    /// are read (and refused if others can read them) here.
    pub fn resolve(given: &Given, env: Env) -> Result<Transport, Error> {
        if given.insecure {
            if given.names_credentials() {
                return Err(Error::Credentials(
                    "--insecure (plain text) cannot go with --ca, --auth-token-file, --cert or --key"
                        .into(),
                ));
            }
            return Ok(Transport::Plain);
        }
        let profile = profile_dir_in(env);
        if given.names_credentials() {
            return given.clone().into_tls(profile.as_deref());
        }
        let from_env = Given::from_env(env)?;
        if from_env.insecure {
            return Ok(Transport::Plain);
        }
        if from_env.names_credentials() {
            return from_env.into_tls(profile.as_deref());
        }
        match profile {
            Some(dir) => Ok(from_profile(&dir)?.unwrap_or(Transport::Plain)),
            None => Ok(Transport::Plain),
        }
    }
}

/// Writes a profile into `dir` (created 0700): a copy of the CA at
/// `ca_pem`, `token` (0600), and a copy of the client certificate and key
/// in `identity` if given (the key 0600; without one, a certificate left
/// from an earlier profile is removed, so the profile never mixes two),
/// so clients on this machine find them without flags. Replaces a profile
/// already there.
pub fn write_profile(
    dir: &Path,
    ca_pem: &Path,
    token: &str,
    identity: Option<(&Path, &Path)>,
) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    std::fs::copy(ca_pem, dir.join(PROFILE_CA))?;
    write_private(&dir.join(PROFILE_TOKEN), token.as_bytes())?;
    let (cert, key) = (dir.join(PROFILE_CERT), dir.join(PROFILE_KEY));
    match identity {
        Some((cert_pem, key_pem)) => {
            write_private(&key, &std::fs::read(key_pem)?)?;
            std::fs::copy(cert_pem, &cert).map(drop)
        }
        None => {
            remove_if_there(&cert)?;
            remove_if_there(&key)
        }
    }
}

fn remove_if_there(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
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
#[path = "credentials_tests.rs"]
mod discovery_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_is_private_and_the_token_never_prints() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("some-ca.pem");
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert, "a certificate").unwrap();
        std::fs::write(&key, "a private key").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let profile = dir.path().join("profile");
        write_profile(&profile, &ca, "rlt_secret", Some((&cert, &key))).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&profile), 0o700);
        assert_eq!(mode(&profile.join(PROFILE_TOKEN)), 0o600);
        // The key is private in the profile even if its source was not.
        assert_eq!(mode(&profile.join(PROFILE_KEY)), 0o600);
        let read = |name: &str| std::fs::read_to_string(profile.join(name)).unwrap();
        assert_eq!(read(PROFILE_KEY), "a private key");
        assert_eq!(read(PROFILE_CERT), "a certificate");
        match Transport::resolve(&Given::default(), &|name: &str| {
            (name == "RAFTLOCK_CONFIG_DIR").then(|| profile.clone().into_os_string())
        })
        .unwrap()
        {
            Transport::Tls(found) => assert_eq!(
                found.identity,
                Some((profile.join(PROFILE_CERT), profile.join(PROFILE_KEY)))
            ),
            other => panic!("{other:?}"),
        }
        // A profile written again without a certificate keeps no old one.
        write_profile(&profile, &ca, "rlt_secret", None).unwrap();
        assert!(!profile.join(PROFILE_CERT).exists() && !profile.join(PROFILE_KEY).exists());
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
