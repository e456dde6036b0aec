//! etcd authentication for the secured section: turning it on in a fresh
//! cluster (a root user, which `AuthEnable` requires, and a `lock` user
//! whose role may read and write every key), and logging a client in:
//! user and password for a token (a JWT, see `credentials`) that goes in
//! the `token` header of every later request, fetched again when etcd
//! says it is no longer valid.

use std::time::Duration;

use anyhow::{bail, Context};
use tonic::metadata::AsciiMetadataValue;
use tonic::{Code, Status};

use crate::etcd_api::etcdserverpb::auth_client::AuthClient;
use crate::etcd_api::etcdserverpb::permission::Type as PermissionType;
use crate::etcd_api::etcdserverpb::{
    AuthEnableRequest, AuthRoleAddRequest, AuthRoleGrantPermissionRequest, AuthUserAddRequest,
    AuthUserGrantRoleRequest, AuthenticateRequest, Permission,
};
use crate::etcd_api::{EtcdClient, EtcdLogin};

/// One attempt at a login or a setup step: both go through Raft, and a
/// login first checks the password's bcrypt hash (tens of ms).
const AUTH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a login keeps trying the members in turn.
const LOGIN_FOR: Duration = Duration::from_secs(30);

/// etcd's built-in administrator role.
const ROOT_ROLE: &str = "root";

impl EtcdClient {
    /// Gets a token for this client's login (nothing without one).
    pub async fn log_in(&self) -> anyhow::Result<()> {
        self.refresh_token(self.current_token()).await
    }

    pub(crate) fn current_token(&self) -> Option<AsciiMetadataValue> {
        self.inner
            .token
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether `status` says the token sent was refused, so that a new
    /// login may help: expired or unknown (`invalid auth token`), or from
    /// before a change to users and roles (`revision of auth store is old`).
    /// etcd's lock service passes these on with code Unknown: hence the
    /// messages.
    pub(crate) fn token_refused(&self, status: &Status) -> bool {
        let message = status.message();
        self.inner.login.is_some()
            && (status.code() == Code::Unauthenticated
                || message.contains("invalid auth token")
                || message.contains("revision of auth store is old"))
    }

    /// Replaces the token, unless another call already replaced `stale`.
    pub(crate) async fn refresh_token(
        &self,
        stale: Option<AsciiMetadataValue>,
    ) -> anyhow::Result<()> {
        let Some(login) = &self.inner.login else {
            return Ok(());
        };
        let _one_at_a_time = self.inner.login_lock.lock().await;
        if self.current_token() != stale {
            return Ok(());
        }
        let token = self.authenticate(login).await?;
        let value = AsciiMetadataValue::try_from(token.as_str())
            .context("etcd sent an auth token that is not a header value")?;
        *self.inner.token.write().unwrap_or_else(|e| e.into_inner()) = Some(value);
        Ok(())
    }

    /// User and password for a token, from each member in turn.
    async fn authenticate(&self, login: &EtcdLogin) -> anyhow::Result<String> {
        let request = AuthenticateRequest {
            name: login.user.clone(),
            password: login.password.clone(),
        };
        let give_up = tokio::time::Instant::now() + LOGIN_FOR;
        let mut index = 0;
        loop {
            let mut client = AuthClient::new(self.inner.channels[index].clone());
            let error = match tokio::time::timeout(
                AUTH_TIMEOUT,
                client.authenticate(request.clone()),
            )
            .await
            {
                Ok(Ok(reply)) => return Ok(reply.into_inner().token),
                Ok(Err(status)) if status.code() == Code::InvalidArgument => {
                    bail!("etcd refused the login of {}: {status}", login.user)
                }
                Ok(Err(status)) => status.to_string(),
                Err(_) => format!("no answer within {AUTH_TIMEOUT:?}"),
            };
            if tokio::time::Instant::now() > give_up {
                bail!(
                    "etcd login of {} failed: {}: {error}",
                    login.user,
                    self.inner.endpoints[index]
                );
            }
            index = (index + 1) % self.inner.channels.len();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Turns authentication on: users `root` (role root) and `lock` (role
    /// `lock`: read and write on every key, which leases and etcd's lock
    /// service need), then `AuthEnable`. Call on a fresh cluster, with a
    /// client that has no login (nobody needs one until the end).
    pub async fn enable_auth(&self, root_password: &str, lock: &EtcdLogin) -> anyhow::Result<()> {
        self.add_user(ROOT_ROLE, root_password).await?;
        self.grant_role(ROOT_ROLE, ROOT_ROLE).await?;
        let role = lock.user.clone();
        self.setup_step("RoleAdd", |c| {
            let name = role.clone();
            async move {
                AuthClient::new(c)
                    .role_add(AuthRoleAddRequest { name })
                    .await
            }
        })
        .await?;
        self.setup_step("RoleGrantPermission", |c| {
            let request = AuthRoleGrantPermissionRequest {
                name: role.clone(),
                // From the lowest key to the end of the key space.
                perm: Some(Permission {
                    perm_type: PermissionType::Readwrite.into(),
                    key: vec![0],
                    range_end: vec![0],
                }),
            };
            async move { AuthClient::new(c).role_grant_permission(request).await }
        })
        .await?;
        self.add_user(&lock.user, &lock.password).await?;
        self.grant_role(&lock.user, &role).await?;
        self.setup_step("AuthEnable", |c| async move {
            AuthClient::new(c).auth_enable(AuthEnableRequest {}).await
        })
        .await
    }

    async fn add_user(&self, name: &str, password: &str) -> anyhow::Result<()> {
        self.setup_step("UserAdd", |c| {
            let request = AuthUserAddRequest {
                name: name.to_string(),
                password: password.to_string(),
            };
            async move { AuthClient::new(c).user_add(request).await }
        })
        .await
    }

    async fn grant_role(&self, user: &str, role: &str) -> anyhow::Result<()> {
        self.setup_step("UserGrantRole", |c| {
            let request = AuthUserGrantRoleRequest {
                user: user.to_string(),
                role: role.to_string(),
            };
            async move { AuthClient::new(c).user_grant_role(request).await }
        })
        .await
    }

    /// One setup call. A retried call whose first try took effect finds
    /// the user or role already there: the same end.
    async fn setup_step<T, F, Fut>(&self, what: &str, call: F) -> anyhow::Result<()>
    where
        F: FnMut(crate::etcd_api::Conn) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    {
        match self.call(AUTH_TIMEOUT, call).await {
            Ok(_) => Ok(()),
            Err(e) if e.to_string().contains("already exists") => Ok(()),
            Err(e) => Err(e.context(format!("etcd {what}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    use crate::credentials::{BenchCredentials, LOCK_USER};
    use crate::etcd_api::{EtcdClient, EtcdLogin};
    use crate::etcd_cluster::EtcdCluster;

    /// Starts 3 etcd members from `etcd` on PATH (Debian: etcd-server):
    /// run with `cargo test -p raftlock-bench -- --ignored`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "starts an etcd cluster"]
    async fn secured_etcd_locks_for_the_logged_in_user_and_refuses_others() {
        let dir = tempfile::tempdir().unwrap();
        let creds = Arc::new(BenchCredentials::create(&dir.path().join("creds"), 3).unwrap());
        let mut etcd = EtcdCluster::start(
            Path::new("etcd"),
            &dir.path().join("etcd"),
            3,
            &[],
            Some(creds.clone()),
        )
        .unwrap();
        etcd.wait_healthy(Duration::from_secs(60)).await.unwrap();
        etcd.enable_auth().await.unwrap();

        let client = etcd.connect().await.unwrap();
        let lease = client.lease_grant(Duration::from_secs(10)).await.unwrap();
        let key = client.lock("bench/auth-test", lease).await.unwrap();
        client.unlock(&key).await.unwrap();
        client.lease_revoke(lease).await.unwrap();

        // A certificate naming no etcd user: with the login the token
        // decides, and locking works; without it the lock is refused.
        let stranger = creds.etcd_tls("etcd-jwt");
        let endpoints = etcd.endpoints();
        let login = creds.etcd_lock_login();
        let with_token = EtcdClient::new(&endpoints, Some(&stranger), Some(login)).unwrap();
        with_token.log_in().await.unwrap();
        let lease = with_token
            .lease_grant(Duration::from_secs(10))
            .await
            .unwrap();
        let key = with_token.lock("bench/auth-test", lease).await.unwrap();
        with_token.unlock(&key).await.unwrap();
        let without = EtcdClient::new(&endpoints, Some(&stranger), None).unwrap();
        let refused = without.lock("bench/auth-test", lease).await.unwrap_err();
        let refused = format!("{refused:#}");
        assert!(refused.contains("permission denied"), "{refused}");
        assert!(!refused.contains("unavailable"), "retried: {refused}");

        let wrong_password = EtcdLogin {
            user: LOCK_USER.into(),
            password: "not the password".into(),
        };
        let wrong = EtcdClient::new(&endpoints, Some(&stranger), Some(wrong_password)).unwrap();
        let refused = wrong.log_in().await.unwrap_err().to_string();
        assert!(refused.contains("refused the login"), "{refused}");
    }
}
