//! One lock-holding session on either system, behind one interface the
//! workloads use: a raftlock [`Session`], or an etcd lease kept alive in
//! the background (one lease per worker, as `etcdctl lock` uses one).
//! Shared and semaphore modes are raftlock's alone: etcd's lock service
//! only has exclusive locks.

use std::time::Duration;

use anyhow::Context;
use raftlock_client::{Client, LockMode, Session, SessionOptions, Wait};
use tokio::task::JoinHandle;

use crate::etcd_api::EtcdClient;

/// A connection to one system's cluster, shared by a workload's workers.
#[derive(Clone)]
pub enum Target {
    Raftlock(Client),
    Etcd(EtcdClient),
}

/// What unlocking needs: the name (raftlock) or the ownership key (etcd).
pub enum Held {
    Raftlock(String),
    Etcd(Vec<u8>),
}

pub enum Sess {
    Raftlock(Session),
    Etcd(LeaseSession),
}

impl Target {
    /// A session (raftlock) or lease (etcd) that lives `ttl` after its
    /// last keepalive; both keep themselves alive every `ttl`/3.
    pub async fn open_session(&self, ttl: Duration, label: &str) -> anyhow::Result<Sess> {
        match self {
            Target::Raftlock(client) => {
                let options = SessionOptions {
                    ttl,
                    lock_delay: Duration::ZERO,
                    label: label.to_string(),
                };
                Ok(Sess::Raftlock(client.open_session(options).await?))
            }
            Target::Etcd(client) => Ok(Sess::Etcd(LeaseSession::open(client, ttl).await?)),
        }
    }
}

impl Sess {
    /// Takes `name` exclusively, waiting for it if someone else holds it.
    pub async fn lock(&self, name: &str) -> anyhow::Result<Held> {
        self.lock_in(name, LockMode::Exclusive).await
    }

    /// Takes `name` in `mode`, waiting until the mode admits this session.
    /// An error for etcd in any mode but exclusive: it has no other.
    pub async fn lock_in(&self, name: &str, mode: LockMode) -> anyhow::Result<Held> {
        match (self, mode) {
            (Sess::Raftlock(session), _) => {
                session.lock_with(name, Wait::Forever, mode).await?;
                Ok(Held::Raftlock(name.to_string()))
            }
            (Sess::Etcd(lease), LockMode::Exclusive) => {
                Ok(Held::Etcd(lease.client.lock(name, lease.id).await?))
            }
            (Sess::Etcd(_), _) => anyhow::bail!("etcd has no {mode} locks"),
        }
    }

    pub async fn unlock(&self, held: &Held) -> anyhow::Result<()> {
        match (self, held) {
            (Sess::Raftlock(session), Held::Raftlock(name)) => Ok(session.release(name).await?),
            (Sess::Etcd(lease), Held::Etcd(key)) => lease.client.unlock(key).await,
            _ => anyhow::bail!("unlocking with the other system's handle"),
        }
    }

    /// Ends the session now, freeing whatever it holds.
    pub async fn close(self) -> anyhow::Result<()> {
        match self {
            Sess::Raftlock(session) => {
                session.close().await?;
                Ok(())
            }
            Sess::Etcd(lease) => lease.close().await,
        }
    }
}

/// An etcd lease with a background keepalive. Dropping it stops the
/// keepalive (the lease then expires); [`LeaseSession::close`] revokes it,
/// deleting every lock key attached to it.
pub struct LeaseSession {
    client: EtcdClient,
    id: i64,
    keepalive: JoinHandle<()>,
}

impl LeaseSession {
    async fn open(client: &EtcdClient, ttl: Duration) -> anyhow::Result<LeaseSession> {
        let id = client.lease_grant(ttl).await.context("granting a lease")?;
        let keepalive = tokio::spawn(keep_alive(client.clone(), id, ttl));
        Ok(LeaseSession {
            client: client.clone(),
            id,
            keepalive,
        })
    }

    async fn close(self) -> anyhow::Result<()> {
        self.keepalive.abort();
        self.client.lease_revoke(self.id).await
    }
}

impl Drop for LeaseSession {
    fn drop(&mut self) {
        self.keepalive.abort();
    }
}

/// Every ttl/3, like raftlock's client; a failed keepalive is retried
/// after 100 ms. Stops when the lease is gone.
async fn keep_alive(client: EtcdClient, lease: i64, ttl: Duration) {
    let mut next = tokio::time::Instant::now() + ttl / 3;
    loop {
        tokio::time::sleep_until(next).await;
        match client.lease_keep_alive(lease).await {
            Ok(left) if left <= 0 => return,
            Ok(_) => next = tokio::time::Instant::now() + ttl / 3,
            Err(_) => next = tokio::time::Instant::now() + Duration::from_millis(100),
        }
    }
}
