//! The one error type of raftlock-tls. A message names the file it is
//! about and what is wrong with it, so that a node that cannot start says
//! which of its credentials to fix.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file is missing, unreadable or does not hold what it should.
    #[error("{}: {problem}", path.display())]
    File { path: PathBuf, problem: String },
    /// Writing would replace an existing file, and replacing was not asked for.
    #[error("{} already exists (replace it with --force)", path.display())]
    Exists { path: PathBuf },
    /// A certificate that does not name exactly one raftlock identity.
    #[error("not a raftlock certificate: {0}")]
    NotRaftlock(String),
    /// A node id, client name, host or number of days that cannot go into
    /// a certificate.
    #[error("{0}")]
    Invalid(String),
    /// rcgen could not build or sign a certificate.
    #[error("cannot make the certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

impl Error {
    pub(crate) fn file(path: &Path, problem: impl Into<String>) -> Error {
        Error::File {
            path: path.to_path_buf(),
            problem: problem.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
