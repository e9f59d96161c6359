//! Generated protobuf and gRPC code for etcd's v3 API and our raft commands.
//! Only `api` speaks gRPC; `apply` and `server` use these types as data.
#![allow(clippy::all, missing_docs)]

pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}
pub mod authpb {
    tonic::include_proto!("authpb");
}
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}
pub mod detcdpb {
    tonic::include_proto!("detcdpb");
}
