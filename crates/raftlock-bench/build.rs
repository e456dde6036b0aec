//! Generates the etcd v3 gRPC client stubs (the trimmed protos in `proto/`)
//! with a vendored protoc, so no system protoc is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/proto");
    tonic_prost_build::configure()
        .build_server(false)
        .compile_protos(
            &[
                format!("{dir}/etcdserverpb.proto"),
                format!("{dir}/v3lockpb.proto"),
            ],
            &[dir.to_string()],
        )?;
    println!("cargo:rerun-if-changed={dir}");
    Ok(())
}
