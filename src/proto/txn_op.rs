//! `RequestOp` and `ResponseOp`, etcd's transaction operations, with a
//! hand-written `prost::Message` impl; every other message is generated.
//!
//! Why by hand: a nested transaction is TxnRequest → RequestOp →
//! TxnRequest → …, two message levels per transaction level, and prost's
//! decoder refuses any message nested deeper than its fixed recursion
//! limit of 100 (not configurable: tokio-rs/prost#1288). etcd accepts 128
//! levels of transactions with its default `--max-txn-ops`, so a 50-deep
//! transaction failed to decode. Worse, one 49 deep passed the gRPC
//! decoder but not the committed entry's (one level more for the
//! `InternalRequest` around it), which stopped every member for good.
//!
//! The fix keeps prost's limit for everything else and gives each
//! transaction level a fresh recursion budget, while bounding the number
//! of transaction levels by `TXN_DECODE_DEPTH_MAX` with a per-thread counter, so
//! a hostile message still cannot exhaust the stack. Decoding is
//! synchronous, so the counter is exact for the decode on this thread.
//! The oneofs stay derived; only the field that nests is decoded here.

use std::cell::Cell;

use prost::bytes::{Buf, BufMut};
use prost::encoding::{self, skip_field, wire_type::WireType, DecodeContext};
use prost::DecodeError;

/// The deepest transaction nesting accepted, counting the outermost
/// transaction as 1. etcd's own limit is its op budget: each level may use
/// what its parent's widest branch left of `--max-txn-ops`, which with
/// the default 128 allows exactly 128 levels. `api::validate` refuses
/// deeper with etcd's "too many operations in txn request" whatever
/// `--max-txn-ops` says, so everything proposed also decodes.
pub const TXN_DEPTH_MAX: usize = 128;

/// The deepest nesting the decoder takes: deeper than what is accepted,
/// so a request a few levels too deep gets etcd's too-many-ops answer
/// from validation rather than a decode error. 256 levels keep the
/// decoder, the checks and apply well inside a 2 MiB task stack, even in
/// a debug build.
pub const TXN_DECODE_DEPTH_MAX: usize = 2 * TXN_DEPTH_MAX;

thread_local! {
    /// Transaction levels being decoded on this thread right now.
    static TXN_DECODE_DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// One transaction level being decoded; leaving it (or unwinding) gives
/// the level back.
struct TxnLevel;

impl TxnLevel {
    fn enter() -> Result<TxnLevel, DecodeError> {
        TXN_DECODE_DEPTH.with(|depth| {
            // The outermost transaction is decoded by generated code and
            // never counted here, so nested levels may reach MAX - 1.
            if depth.get() + 1 >= TXN_DECODE_DEPTH_MAX {
                // prost offers no other constructor for a decode error of
                // our own; it is deprecated for internal use, but public.
                #[allow(deprecated)]
                return Err(DecodeError::new("transactions nested too deep"));
            }
            depth.set(depth.get() + 1);
            Ok(TxnLevel)
        })
    }
}

impl Drop for TxnLevel {
    fn drop(&mut self) {
        TXN_DECODE_DEPTH.with(|depth| depth.set(depth.get() - 1));
    }
}

/// Decodes the nested transaction of field 4 into `slot` (merging into a
/// transaction already there, as protobuf's last-one-wins oneof does),
/// with a fresh recursion budget for this level.
fn merge_nested<M: prost::Message + Default>(
    slot: Option<&mut M>,
    wire_type: WireType,
    buf: &mut impl Buf,
) -> Result<Option<M>, DecodeError> {
    let _level = TxnLevel::enter()?;
    match slot {
        Some(existing) => {
            encoding::message::merge(wire_type, existing, buf, DecodeContext::default())?;
            Ok(None)
        }
        None => {
            let mut fresh = M::default();
            encoding::message::merge(wire_type, &mut fresh, buf, DecodeContext::default())?;
            Ok(Some(fresh))
        }
    }
}

/// The field number of the nested transaction in both oneofs.
const TXN_TAG: u32 = 4;

/// `prost::Message` for an op whose oneof `$field` nests a transaction in
/// its `$Txn` variant (field 4): that one field is decoded by
/// `merge_nested`, the others as derived. One macro, so the request and
/// the response side cannot drift apart.
macro_rules! op_message {
    ($Op:ident, $field:ident, $Oneof:path, $Txn:ident) => {
        impl prost::Message for $Op {
            fn encode_raw(&self, buf: &mut impl BufMut) {
                if let Some(oneof) = &self.$field {
                    oneof.encode(buf);
                }
            }

            fn merge_field(
                &mut self,
                tag: u32,
                wire_type: WireType,
                buf: &mut impl Buf,
                ctx: DecodeContext,
            ) -> Result<(), DecodeError> {
                use $Oneof as Oneof;
                match tag {
                    TXN_TAG => {
                        let existing = match &mut self.$field {
                            Some(Oneof::$Txn(txn)) => Some(txn),
                            _ => None,
                        };
                        if let Some(fresh) = merge_nested(existing, wire_type, buf)? {
                            self.$field = Some(Oneof::$Txn(fresh));
                        }
                        Ok(())
                    }
                    1..=3 => Oneof::merge(&mut self.$field, tag, wire_type, buf, ctx),
                    _ => skip_field(wire_type, tag, buf, ctx),
                }
            }

            fn encoded_len(&self) -> usize {
                self.$field.as_ref().map_or(0, |oneof| oneof.encoded_len())
            }

            fn clear(&mut self) {
                self.$field = None;
            }
        }
    };
}

/// `op` at the bottom of `depth` transactions, each the only success op of
/// its parent (the outermost counts): how tests and the simulator's
/// hostile client build deep nesting.
pub fn nested_txn(depth: usize, op: RequestOp) -> crate::proto::etcdserverpb::TxnRequest {
    use crate::proto::etcdserverpb::TxnRequest;
    let mut txn = TxnRequest {
        success: vec![op],
        ..Default::default()
    };
    for _ in 1..depth {
        txn = TxnRequest {
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestTxn(txn)),
            }],
            ..Default::default()
        };
    }
    txn
}

/// One operation inside a transaction branch.
#[derive(Clone, PartialEq, Default, Debug)]
pub struct RequestOp {
    pub request: Option<request_op::Request>,
}

pub mod request_op {
    use crate::proto::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest, TxnRequest};

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Request {
        #[prost(message, tag = "1")]
        RequestRange(RangeRequest),
        #[prost(message, tag = "2")]
        RequestPut(PutRequest),
        #[prost(message, tag = "3")]
        RequestDeleteRange(DeleteRangeRequest),
        #[prost(message, tag = "4")]
        RequestTxn(TxnRequest),
    }
}

op_message!(RequestOp, request, request_op::Request, RequestTxn);

/// The result of one `RequestOp`, in the same position.
#[derive(Clone, PartialEq, Default, Debug)]
pub struct ResponseOp {
    pub response: Option<response_op::Response>,
}

pub mod response_op {
    use crate::proto::etcdserverpb::{
        DeleteRangeResponse, PutResponse, RangeResponse, TxnResponse,
    };

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Response {
        #[prost(message, tag = "1")]
        ResponseRange(RangeResponse),
        #[prost(message, tag = "2")]
        ResponsePut(PutResponse),
        #[prost(message, tag = "3")]
        ResponseDeleteRange(DeleteRangeResponse),
        #[prost(message, tag = "4")]
        ResponseTxn(TxnResponse),
    }
}

op_message!(ResponseOp, response, response_op::Response, ResponseTxn);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::detcdpb::{internal_request, InternalRequest};
    use crate::proto::etcdserverpb::{PutRequest, TxnRequest};
    use prost::Message as _;

    /// A transaction nested `depth` levels deep, a put at the bottom.
    fn nested(depth: usize) -> TxnRequest {
        let put = RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                ..Default::default()
            })),
        };
        nested_txn(depth, put)
    }

    #[test]
    fn every_depth_up_to_the_limit_round_trips_inside_a_committed_entry() {
        for depth in [1, 2, 49, 50, 100, TXN_DEPTH_MAX, TXN_DECODE_DEPTH_MAX] {
            let request = InternalRequest {
                id: 7,
                request: Some(internal_request::Request::Txn(nested(depth))),
                auth: None,
            };
            let bytes = request.encode_to_vec();
            let decoded = InternalRequest::decode(&bytes[..]).unwrap_or_else(|e| {
                panic!("depth {depth} must decode: {e}");
            });
            assert_eq!(decoded, request, "depth {depth} must round-trip");
        }
    }

    #[test]
    fn deeper_than_the_limit_is_a_decode_error_not_a_crash() {
        let bytes = nested(TXN_DECODE_DEPTH_MAX + 1).encode_to_vec();
        assert!(TxnRequest::decode(&bytes[..]).is_err());
        // The failed decode gave its levels back.
        let bytes = nested(TXN_DECODE_DEPTH_MAX).encode_to_vec();
        assert!(TxnRequest::decode(&bytes[..]).is_ok());
    }

    #[test]
    fn a_hostile_deep_message_is_refused_without_exhausting_the_stack() {
        // 10,000 levels of field 4 inside field 2: what an attacker sends
        // by hand. Built from the inside out, as raw bytes.
        let mut bytes: Vec<u8> = Vec::new();
        for _ in 0..10_000 {
            let mut op = Vec::new();
            encoding::encode_key(TXN_TAG, WireType::LengthDelimited, &mut op);
            encoding::encode_varint(bytes.len() as u64, &mut op);
            op.extend_from_slice(&bytes);
            let mut txn = Vec::new();
            encoding::encode_key(2, WireType::LengthDelimited, &mut txn);
            encoding::encode_varint(op.len() as u64, &mut txn);
            txn.extend_from_slice(&op);
            bytes = txn;
        }
        assert!(TxnRequest::decode(&bytes[..]).is_err());
    }

    #[test]
    fn a_repeated_nested_field_merges_as_protobuf_does() {
        // Two occurrences of field 4: protobuf merges the second into the
        // first when both are the same oneof case.
        let first = RequestOp {
            request: Some(request_op::Request::RequestTxn(nested(1))),
        };
        let mut bytes = first.encode_to_vec();
        bytes.extend(first.encode_to_vec());
        let decoded = RequestOp::decode(&bytes[..]).unwrap();
        let Some(request_op::Request::RequestTxn(txn)) = decoded.request else {
            panic!("must stay a txn");
        };
        assert_eq!(txn.success.len(), 2, "repeated fields concatenate on merge");
    }
}
