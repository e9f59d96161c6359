//! Generated protobuf and gRPC code for etcd's v3 API and our raft commands.
//! Only `api` speaks gRPC; `apply` and `server` use these types as data.
//! `RequestOp` and `ResponseOp` are hand-written (`txn_op.rs`): etcd's
//! nested transactions go deeper than prost's fixed recursion limit.
#![allow(clippy::all, missing_docs)]

pub mod raft_shape;
mod txn_op;

pub use txn_op::{nested_txn, TXN_DECODE_DEPTH_MAX, TXN_DEPTH_MAX};

pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}
pub mod authpb {
    tonic::include_proto!("authpb");
}
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
    pub use super::txn_op::{request_op, response_op, RequestOp, ResponseOp};
}
pub mod detcdpb {
    tonic::include_proto!("detcdpb");
}
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
}
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
}
/// gRPC's standard health service, served as etcd serves it.
pub mod grpc_health_v1 {
    tonic::include_proto!("grpc.health.v1");
}
