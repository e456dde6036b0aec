//! Who a certificate says its holder is: a node (`raftlock://node/<ID>`)
//! or a named client (`raftlock://client/<NAME>`), carried as a URI in the
//! subject alternative names. Certificates come off the network here, so
//! anything unexpected is an error, never a panic.

use std::fmt;

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::error::{Error, Result};

const SCHEME: &str = "raftlock";
const NODE_PREFIX: &str = "raftlock://node/";
const CLIENT_PREFIX: &str = "raftlock://client/";
/// Longest client name: it goes into file names and certificate fields.
const MAX_CLIENT_NAME: usize = 64;

/// The raftlock identity a certificate proves.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Identity {
    /// A cluster node, by its (positive) node id.
    Node(u64),
    /// A client, by the name it was issued under.
    Client(String),
}

impl Identity {
    /// The SAN URI that carries this identity in a certificate.
    pub fn uri(&self) -> String {
        match self {
            Identity::Node(id) => format!("{NODE_PREFIX}{id}"),
            Identity::Client(name) => format!("{CLIENT_PREFIX}{name}"),
        }
    }

    fn from_uri(uri: &str) -> Result<Identity> {
        if let Some(id) = uri.strip_prefix(NODE_PREFIX) {
            // u64's parser takes a leading '+': only plain digits are ours.
            let digits = !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit());
            let id = id
                .parse()
                .ok()
                .filter(|&id| digits && check_node_id(id).is_ok());
            return match id {
                Some(id) => Ok(Identity::Node(id)),
                None => Err(Error::NotRaftlock(format!("bad node id in {uri:?}"))),
            };
        }
        if let Some(name) = uri.strip_prefix(CLIENT_PREFIX) {
            check_client_name(name)
                .map_err(|_| Error::NotRaftlock(format!("bad client name in {uri:?}")))?;
            return Ok(Identity::Client(name.to_string()));
        }
        Err(Error::NotRaftlock(format!("unknown identity {uri:?}")))
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Node(id) => write!(f, "node {id}"),
            Identity::Client(name) => write!(f, "client {name}"),
        }
    }
}

/// Node ids are positive, as the server's `--id` requires.
pub(crate) fn check_node_id(id: u64) -> Result<()> {
    match id {
        0 => Err(Error::Invalid("node id 0: node ids are positive".into())),
        _ => Ok(()),
    }
}

/// A client name is 1 to 64 ASCII letters, digits, '.', '_' or '-',
/// starting with a letter or digit: safe in a URI and a file name as is.
pub(crate) fn check_client_name(name: &str) -> Result<()> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let starts_well = name.starts_with(|c: char| c.is_ascii_alphanumeric());
    if name.len() <= MAX_CLIENT_NAME && starts_well && name.chars().all(allowed) {
        return Ok(());
    }
    Err(Error::Invalid(format!(
        "client name {name:?}: use 1 to {MAX_CLIENT_NAME} letters, digits, '.', '_' or '-', \
         starting with a letter or digit"
    )))
}

/// The identity in a DER certificate: it must carry exactly one
/// `raftlock://` URI among its subject alternative names, well formed.
/// Does not verify the certificate: the TLS handshake has done that for a
/// peer's certificate.
pub fn peer_identity(der: &[u8]) -> Result<Identity> {
    let (rest, cert) = X509Certificate::from_der(der)
        .map_err(|e| Error::NotRaftlock(format!("cannot parse the certificate: {e}")))?;
    if !rest.is_empty() {
        return Err(Error::NotRaftlock("bytes after the certificate".into()));
    }
    let names = cert
        .subject_alternative_name()
        .map_err(|e| Error::NotRaftlock(format!("bad subject alternative names: {e}")))?
        .map(|extension| extension.value.general_names.as_slice())
        .unwrap_or_default();
    let mut ours = names.iter().filter_map(|name| match name {
        GeneralName::URI(uri) if has_our_scheme(uri) => Some(*uri),
        _ => None,
    });
    match (ours.next(), ours.next()) {
        (Some(uri), None) => Identity::from_uri(uri),
        (None, _) => Err(Error::NotRaftlock("no raftlock:// URI".into())),
        (Some(_), Some(_)) => Err(Error::NotRaftlock("several raftlock:// URIs".into())),
    }
}

/// Schemes are case-insensitive: `RAFTLOCK://` counts as one of ours (and
/// is then refused as malformed) rather than slipping past the count.
fn has_our_scheme(uri: &str) -> bool {
    uri.split_once(':')
        .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case(SCHEME))
}

/// The identity of the peer that sent `request`, from the certificate it
/// presented in the TLS handshake. `Ok(None)` when the connection is not
/// TLS or the peer sent no certificate; an error when its certificate
/// names no single raftlock identity.
pub fn request_identity<T>(request: &tonic::Request<T>) -> Result<Option<Identity>> {
    let Some(certs) = request.peer_certs() else {
        return Ok(None);
    };
    certs.first().map(|cert| peer_identity(cert)).transpose()
}

#[cfg(test)]
mod tests;
