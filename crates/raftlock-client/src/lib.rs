//! Rust client for raftlock.
//!
//! A [`Client`] talks to any node and follows the leader: a follower's
//! redirect is honoured at once, an unreachable node is skipped with
//! backoff. A [`Session`] owns locks, keeps itself alive in the background
//! and tells you if it was lost. Every write carries a per-session request
//! number, so retrying after a leader change never applies twice.
//!
//! ```no_run
//! # async fn demo() -> Result<(), raftlock_client::Error> {
//! use raftlock_client::{Client, SessionOptions, Wait};
//! let client = Client::new(["127.0.0.1:7899", "127.0.0.1:7900", "127.0.0.1:7901"])?;
//! let session = client.open_session(SessionOptions::default()).await?;
//! let grant = session.lock("results.h5", Wait::Forever).await?;
//! // ... write, passing grant.token to anything that checks fencing tokens ...
//! session.release("results.h5").await?;
//! session.close().await?;
//! # Ok(()) }
//! ```
//!
//! [`Session::lock_with`] takes a [`LockMode`]: shared (readers together,
//! never with a writer) or a semaphore (at most `limit` holders).

mod admin;
mod bearer;
#[cfg(feature = "cli")]
mod cli;
mod client;
mod credentials;
mod endpoint;
mod error;
mod mode;
mod reader;
mod retry;
mod session;
mod silence;
mod token_file;
mod watch;

pub use admin::client_addr;
#[cfg(feature = "cli")]
pub use cli::TransportArgs;
pub use client::{Client, ClientOptions};
pub use credentials::{
    process_env, profile_dir, profile_dir_in, write_profile, Credentials, Env, Given, Token,
    Transport, ENV_CA, ENV_CERT, ENV_INSECURE, ENV_KEY, ENV_TOKEN_FILE, PROFILE_CA, PROFILE_CERT,
    PROFILE_KEY, PROFILE_TOKEN,
};
pub use endpoint::parse_endpoint;
pub use error::Error;
pub use mode::mode_from_wire;
pub use raftlock_core::LockMode;
pub use raftlock_proto::v1::{ChangeKind, LeaveReason, LockChange};
pub use raftlock_proto::v1::{LockHolder, LockInfo, Member, Role, StatusResponse, Waiter};
pub use session::{Grant, Session, SessionOptions, Wait};
pub use token_file::read_token_file;
pub use watch::{Watch, WatchEvent};
