//! Compiles etcd's v3 API protos (our own wire-compatible copies in proto/,
//! and gRPC's health service, which etcd serves too) with the pure-Rust
//! `protox` compiler, so no system protoc is needed, and generates both
//! the real and the madsim tonic code.

#![allow(clippy::disallowed_methods)] // A build script, not the core: it writes into OUT_DIR.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "proto/mvccpb/kv.proto",
    "proto/authpb/auth.proto",
    "proto/etcdserverpb/rpc.proto",
    "proto/detcd/internal.proto",
    "proto/detcd/raft.proto",
    "proto/detcd/state.proto",
    "proto/v3lockpb/v3lock.proto",
    "proto/v3electionpb/v3election.proto",
    "proto/grpc/health/v1/health.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("detcd_descriptor.bin");
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    std::fs::write(
        &descriptor_path,
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_build::configure()
        .file_descriptor_set_path(&descriptor_path)
        .skip_protoc_run()
        .build_client(true)
        .build_server(true)
        // Hand-written: etcd's nested transactions go deeper than prost's
        // recursion limit (src/proto/txn_op.rs says why and how).
        .extern_path(".etcdserverpb.RequestOp", "crate::proto::etcdserverpb::RequestOp")
        .extern_path(".etcdserverpb.ResponseOp", "crate::proto::etcdserverpb::ResponseOp")
        .compile_protos(PROTOS, &["proto"])?;
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
