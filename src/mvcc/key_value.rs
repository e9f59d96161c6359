//! `KeyValue`: one version of a key, as etcd's `mvccpb.KeyValue` holds it.

/// A key with its value and revision metadata at one revision.
///
/// In `WriteTxn::changes` a tombstone appears as a `KeyValue` with only
/// `key` and `mod_revision` set; `create_revision == 0` marks it, because
/// every put has a create revision of at least 2.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Vec<u8>,
    /// The revision of the put that created the key's current generation.
    pub create_revision: i64,
    /// The revision of the put that wrote this version.
    pub mod_revision: i64,
    /// 1 for the put that created the key, plus one per later change.
    pub version: i64,
    pub value: Vec<u8>,
    /// The lease the key is attached to; 0 for none.
    pub lease: i64,
}

impl KeyValue {
    /// The change record of a deletion at `mod_revision`.
    pub fn tombstone(key: Vec<u8>, mod_revision: i64) -> Self {
        KeyValue {
            key,
            mod_revision,
            ..KeyValue::default()
        }
    }

    /// True for a change that deleted the key (see the type's docs).
    pub fn is_tombstone(&self) -> bool {
        self.create_revision == 0
    }
}

/// The wire and storage form: the same fields as etcd's message.
impl From<KeyValue> for crate::proto::mvccpb::KeyValue {
    fn from(kv: KeyValue) -> Self {
        crate::proto::mvccpb::KeyValue {
            key: kv.key,
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
            value: kv.value,
            lease: kv.lease,
        }
    }
}

impl From<crate::proto::mvccpb::KeyValue> for KeyValue {
    fn from(kv: crate::proto::mvccpb::KeyValue) -> Self {
        KeyValue {
            key: kv.key,
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
            value: kv.value,
            lease: kv.lease,
        }
    }
}
