//! `raftlock gateway`: serves the ZeroMQ lock-server protocol of the
//! original `LockerServer` post and of pypet's `LockerServer` /
//! `LockerClient`, on top of a raftlock cluster.
//!
//! Layers, one per module: [`protocol`] (the text protocol, pure),
//! [`zmtp`] (ZeroMQ's wire protocol), [`owners`] (client ids to raftlock
//! sessions), [`dispatch`] (a request to a reply), [`server`] (the accept
//! loop). See docs/gateway.md.

pub mod dispatch;
pub mod owners;
pub mod protocol;
pub mod server;
pub mod zmtp;

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use raftlock_client::{Client, ClientOptions, Error, Transport, TransportArgs};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::dispatch::Dispatcher;
use crate::owners::{Config, Owners};

/// The same default as every other client command.
const DEFAULT_ENDPOINTS: &str = "127.0.0.1:7899,127.0.0.1:7900,127.0.0.1:7901";
/// Exit status when the cluster address or the ZeroMQ address is unusable.
const UNAVAILABLE: i32 = 69;

#[derive(Args, Debug)]
#[command(after_help = "\
Clients of the lock-server protocol (LockerClient from the original post,
pypet's LockerClient and ForkAwareLockerClient) need no change: point their
URL at this address. Each lock a client id (host__pid) takes or waits for
is a raftlock session labelled with that id, so `raftlock locks` shows the
holder and its fencing token; see docs/gateway.md for what differs from
the original server.")]
pub struct GatewayArgs {
    /// The ZeroMQ address to serve (REQ clients connect here); `*` for every interface.
    #[arg(long, value_name = "URL", default_value = "tcp://127.0.0.1:7777")]
    pub zmq: String,
    /// Cluster nodes to talk to (any of them will do; the leader is found).
    #[arg(long, env = "RAFTLOCK_ENDPOINTS", default_value = DEFAULT_ENDPOINTS, value_delimiter = ',', value_parser = raftlock_client::parse_endpoint)]
    pub endpoints: Vec<String>,
    /// A client that sends nothing for this many seconds loses its locks
    /// (they go to the next waiter). These clients say nothing while they
    /// hold, so make it longer than any lock is held.
    #[arg(long, value_name = "SECS", default_value = "600", value_parser = client_ttl)]
    pub client_ttl: Duration,
    /// Obey DONE: stop the gateway (and release its clients' locks) when a
    /// client sends it. Without this, DONE is answered and ignored.
    #[arg(long)]
    pub allow_done: bool,
    /// Answer a pypet-dialect grant `GO:::TOKEN` (the fencing token) instead
    /// of `GO`. pypet's client accepts it; the original post's does not, so
    /// its dialect always gets plain `GO`.
    #[arg(long)]
    pub reply_token: bool,
    /// Serve at most this many client ids at once.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_clients: u32,
    /// How to connect to the cluster: the same flags as every client command.
    #[command(flatten)]
    pub transport: TransportArgs,
}

/// Exit status for credentials that cannot be used (a usage error).
const USAGE: i32 = 2;
/// Exit status when the cluster refuses the gateway's credentials.
const AUTH: i32 = 77;

/// The cluster client for `args`, or the exit status and why there is none.
fn cluster_client(args: &GatewayArgs) -> Result<Client, (i32, Error)> {
    let transport = args.transport.transport().map_err(|e| (USAGE, e))?;
    let options = ClientOptions {
        transport,
        ..ClientOptions::default()
    };
    Client::with_options(args.endpoints.iter().cloned(), options).map_err(|e| {
        let code = match e {
            Error::Credentials(_) => USAGE,
            _ => UNAVAILABLE,
        };
        (code, e)
    })
}

/// Checks once, before serving, that a TLS cluster accepts the gateway's
/// credentials (the first node that answers decides), so a wrong token or
/// CA stops it at start rather than failing every client's request. A
/// cluster that does not answer is not a reason to stop: it is waited for
/// later, as before.
async fn check_credentials(client: &Client) -> Result<(), i32> {
    if !matches!(client.options().transport, Transport::Tls(_)) {
        return Ok(());
    }
    for endpoint in client.endpoints() {
        match client.node_status(endpoint, CHECK_TIMEOUT).await {
            Ok(_) => return Ok(()),
            Err(e @ (Error::Unauthenticated(_) | Error::PermissionDenied(_) | Error::Tls(_))) => {
                eprintln!("raftlock gateway: {e}");
                return Err(AUTH);
            }
            Err(_) => continue,
        }
    }
    Ok(())
}

/// How long each node gets to answer the credentials check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// `--client-ttl`: 1 second to 7 days.
fn client_ttl(text: &str) -> Result<Duration, String> {
    const MAX_SECS: f64 = 7.0 * 86_400.0;
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| "not a number of seconds; must be 1 to 604800".to_string())?;
    if !(1.0..=MAX_SECS).contains(&secs) {
        return Err("must be 1 to 604800 seconds".into());
    }
    Ok(Duration::from_millis((secs * 1000.0).round() as u64))
}

/// Runs the gateway until SIGINT/SIGTERM, or an obeyed DONE. Returns the
/// exit status.
pub async fn run(args: GatewayArgs) -> i32 {
    let client = match cluster_client(&args) {
        Ok(client) => client,
        Err((code, e)) => {
            eprintln!("raftlock gateway: {e}");
            return code;
        }
    };
    if let Err(code) = check_credentials(&client).await {
        return code;
    }
    let listener = match server::parse_url(&args.zmq) {
        Ok((host, port)) => TcpListener::bind((host.as_str(), port)).await,
        Err(e) => {
            eprintln!("raftlock gateway: --zmq {e}");
            return UNAVAILABLE;
        }
    };
    let listener = match listener {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("raftlock gateway: cannot listen on {}: {e}", args.zmq);
            return UNAVAILABLE;
        }
    };
    let owners = Owners::new(
        client,
        Config {
            client_ttl: args.client_ttl,
            max_clients: args.max_clients as usize,
        },
    );
    let expiry = tokio::spawn(owners.clone().expire_forever());
    let dispatcher = Arc::new(Dispatcher {
        owners: owners.clone(),
        allow_done: args.allow_done,
        reply_token: args.reply_token,
    });
    let (stop_tx, stop) = watch::channel(false);
    let signals = tokio::spawn(async move {
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        stop_tx.send_replace(true);
    });
    tracing::info!(
        zmq = %args.zmq,
        endpoints = %args.endpoints.join(","),
        client_ttl = ?args.client_ttl,
        "gateway serving"
    );
    let done = server::serve(listener, dispatcher, stop).await;
    signals.abort();
    expiry.abort();
    if done {
        owners.end_all().await;
    } else {
        // A restart must not free locks whose holders are still working:
        // the sessions expire by themselves after their TTL.
        tracing::info!("stopping; clients' sessions expire after their TTL");
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ttl_range() {
        assert_eq!(client_ttl("600"), Ok(Duration::from_secs(600)));
        assert_eq!(client_ttl("2.5"), Ok(Duration::from_millis(2500)));
        for bad in ["0", "0.5", "-1", "604801", "x", "", "NaN", "inf"] {
            assert!(client_ttl(bad).is_err(), "{bad}");
        }
    }
}
