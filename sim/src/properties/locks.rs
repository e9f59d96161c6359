//! The lock property, checked over what the lock workload
//! (`lock_workload`) recorded. Each client takes the lock through
//! v3lock's Lock, then writes a shared register in a txn fenced on its
//! lock key: the write happens only while the key still has the create
//! revision the client got, which is the holder's fencing token. The
//! check: ordered by the revision each write committed at, the tokens
//! never go down (so no two holders' fenced writes interleave), and each
//! token belongs to one client.

use std::collections::BTreeMap;

/// A fenced write that committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FencedWrite {
    pub client: u64,
    /// The create revision of the client's lock key.
    pub token: i64,
    /// The revision the write committed at.
    pub revision: i64,
}

/// Every violation found; empty when the record holds.
pub fn check(writes: &[FencedWrite]) -> Vec<String> {
    let mut violations = Vec::new();
    let mut ordered = writes.to_vec();
    ordered.sort_by_key(|write| write.revision);
    let mut owners: BTreeMap<i64, u64> = BTreeMap::new();
    for write in &ordered {
        if let Some(owner) = owners.insert(write.token, write.client) {
            if owner != write.client {
                violations.push(format!(
                    "clients {owner} and {} both wrote with fencing token {}",
                    write.client, write.token
                ));
            }
        }
    }
    for pair in ordered.windows(2) {
        if pair[1].token < pair[0].token {
            violations.push(format!(
                "client {} wrote with token {} at revision {} after client {} wrote with token {} at revision {}: two holders' writes interleave",
                pair[1].client,
                pair[1].token,
                pair[1].revision,
                pair[0].client,
                pair[0].token,
                pair[0].revision
            ));
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(client: u64, token: i64, revision: i64) -> FencedWrite {
        FencedWrite {
            client,
            token,
            revision,
        }
    }

    #[test]
    fn tokens_that_go_up_pass_and_an_interleaving_is_caught() {
        let fine = [
            write(0, 5, 6),
            write(0, 5, 7),
            write(1, 8, 10),
            write(0, 11, 12),
        ];
        assert!(check(&fine).is_empty());
        let interleaved = [write(0, 5, 6), write(1, 8, 10), write(0, 5, 11)];
        let found = check(&interleaved);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("interleave"));
        let shared = [write(0, 5, 6), write(1, 5, 7)];
        assert!(check(&shared)[0].contains("both wrote"));
    }
}
