//! One request in, one reply out: parses the text, applies it to the
//! owners, and words the answer in the request's dialect.

use crate::owners::{LockOutcome, Owners, UnlockOutcome};
use crate::protocol::{self, Dialect, Reply, Request};

/// What the connection does after sending the reply.
#[derive(Debug, PartialEq, Eq)]
pub enum After {
    Continue,
    /// A client sent DONE and the gateway was started with --allow-done.
    Stop,
}

pub struct Dispatcher {
    pub owners: Owners,
    /// Obey DONE (stop the gateway) instead of only answering it.
    pub allow_done: bool,
    /// Answer pypet-dialect grants `GO:::token` instead of `GO`.
    pub reply_token: bool,
}

impl Dispatcher {
    /// The reply to one request body.
    pub async fn answer(&self, body: &[u8]) -> (String, After) {
        let (dialect, parsed) = protocol::parse(body);
        let request = match parsed {
            Ok(request) => request,
            Err(reply) => {
                tracing::debug!(%dialect, ?reply, "request refused");
                return (reply.format(dialect), After::Continue);
            }
        };
        let (reply, after) = self.apply(dialect, request).await;
        (reply.format(dialect), after)
    }

    /// The reply to a request we could not take whole (over a size limit,
    /// or in several frames); `start` is what we kept of it.
    pub fn refuse(&self, start: &[u8], why: &str) -> String {
        let reply = Reply::MsgError(format!(
            "Request starting `{}` not understood: {why}",
            String::from_utf8_lossy(start)
        ));
        reply.format(Dialect::of(start))
    }

    async fn apply(&self, dialect: Dialect, request: Request) -> (Reply, After) {
        match request {
            Request::Ping => (Reply::Pong, After::Continue),
            Request::Done if self.allow_done => {
                tracing::info!("DONE received; stopping (--allow-done)");
                (Reply::Closed, After::Stop)
            }
            Request::Done => {
                tracing::warn!(
                    "DONE received and answered; the gateway keeps running (start it with \
                     --allow-done to let clients stop it)"
                );
                (Reply::Closed, After::Continue)
            }
            Request::Lock(target) => {
                let reply = match self.owners.lock(&target).await {
                    LockOutcome::Granted(token) => Reply::Go {
                        token: self.reply_token.then_some(token),
                    },
                    LockOutcome::Waiting => Reply::Wait,
                    // pypet's server refuses a holder's second request (its
                    // client takes that as "my GO was lost" after a retry);
                    // the post's server answered WAIT.
                    LockOutcome::AlreadyHeld => match dialect {
                        Dialect::Pypet => Reply::LockError(format!(
                            "Re-request of lock `{}` by `{}`, which holds it ({})",
                            target.name,
                            target.client,
                            target.who()
                        )),
                        Dialect::Post => Reply::Wait,
                    },
                    LockOutcome::Refused(why) => Reply::LockError(why),
                };
                (reply, After::Continue)
            }
            Request::Unlock(target) => {
                let reply = match self.owners.unlock(&target).await {
                    UnlockOutcome::Released => Reply::Released,
                    UnlockOutcome::Refused(why) => {
                        tracing::info!(client = %target.client, lock = %target.name, %why, "release refused");
                        Reply::ReleaseError(why)
                    }
                };
                (reply, After::Continue)
            }
        }
    }
}
