//! Generates the gRPC code from `proto/` with a vendored protoc, so no
//! system protoc is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../proto");
    println!("cargo:rerun-if-changed={dir}/raftlock.proto");
    println!("cargo:rerun-if-changed={dir}/raft.proto");
    tonic_prost_build::configure()
        .bytes(".raftlock.raft.v1.RaftMessage.data")
        .compile_protos(
            &[format!("{dir}/raftlock.proto"), format!("{dir}/raft.proto")],
            &[dir.to_string()],
        )?;
    Ok(())
}
