//! A peer sending snapshot chunks to a running node: a chunk reaching past
//! `--max-snapshot-bytes` is refused with INVALID_ARGUMENT before openraft
//! writes it anywhere, and the node goes on answering.

use openraft::raft::{InstallSnapshotRequest, InstallSnapshotResponse};
use openraft::{CommittedLeaderId, LogId, SnapshotMeta, Vote};
use raftlock_node::codec::{self, DEFAULT_MAX_SNAPSHOT_BYTES};
use raftlock_node::{Node, NodeConfig, TypeConfig};
use raftlock_proto::raft::raft_client::RaftClient;
use raftlock_proto::raft::RaftMessage;
use tempfile::TempDir;

fn chunk(offset: u64, data: Vec<u8>) -> RaftMessage {
    let req = InstallSnapshotRequest::<TypeConfig> {
        vote: Vote::new_committed(5, 2),
        meta: SnapshotMeta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(5, 2), 100)),
            last_membership: Default::default(),
            snapshot_id: "from-a-hostile-peer".into(),
        },
        offset,
        data,
        done: false,
    };
    RaftMessage {
        data: codec::encode(&req).unwrap().into(),
    }
}

#[tokio::test]
async fn chunks_past_the_snapshot_limit_are_refused() {
    let dir = TempDir::new().unwrap();
    let node = Node::start(NodeConfig {
        id: 1,
        listen: "127.0.0.1:0".parse().unwrap(),
        peer_listen: None,
        peers: Default::default(),
        data_dir: dir.path().to_path_buf(),
        timings: Default::default(),
        snapshot_every: 1000,
        max_snapshot_bytes: DEFAULT_MAX_SNAPSHOT_BYTES,
        metrics_listen: None,
        early_ack: true,
        security: None,
        joins: false,
        limits: Default::default(),
        server_limits: Default::default(),
    })
    .await
    .unwrap();
    let mut peer = RaftClient::connect(format!("http://{}", node.peer_addr()))
        .await
        .unwrap();

    // The first chunk opens a snapshot file; openraft accepts it.
    let first = peer.install_snapshot(chunk(0, vec![1; 16])).await.unwrap();
    let reply: Result<InstallSnapshotResponse<u64>, serde::de::IgnoredAny> =
        codec::decode(&first.into_inner().data).unwrap();
    assert!(reply.is_ok());

    for offset in [DEFAULT_MAX_SNAPSHOT_BYTES, 1 << 40, u64::MAX - 3] {
        let refused = peer
            .install_snapshot(chunk(offset, vec![2; 16]))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused}");
        assert!(
            refused.message().contains("--max-snapshot-bytes"),
            "{refused}"
        );
    }
    // A chunk that ends exactly at the limit is the leader's business.
    let at_limit = peer
        .install_snapshot(chunk(DEFAULT_MAX_SNAPSHOT_BYTES - 16, vec![3; 16]))
        .await;
    assert!(at_limit.is_ok(), "{at_limit:?}");
    assert!(node.raft().metrics().borrow().running_state.is_ok());
    node.shutdown().await.unwrap();
}
