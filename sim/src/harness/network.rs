//! The simulated network's faults. Raft traffic between members runs on
//! long-lived streams, which madsim's link clogging only delays, so cuts
//! and per-message faults act in the transport seam (`MessageFilter`).
//! Client requests open a connection each, so for them madsim's clogging
//! is a real cut: a client on one side of a partition gets "connection
//! refused" from members on the other.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use detcd::rng::stable_hash;
use detcd::transport::{MessageFilter, Verdict};
use madsim::rand::Rng;
use raft::eraftpb::{Message, MessageType};

/// Link cuts and message faults, consulted for every raft message sent.
#[derive(Debug, Default)]
pub struct NetFilter {
    state: Mutex<FilterState>,
}

#[derive(Debug, Default)]
struct FilterState {
    /// (from, to) member-id pairs whose messages are dropped.
    cut: BTreeSet<(u64, u64)>,
    drop_ppm: u32,
    duplicate_ppm: u32,
    delay_ppm: u32,
    /// A member whose incoming replication traffic (appends, snapshots,
    /// heartbeats) arrives this much late: it lags while clients keep
    /// reading from it.
    lagging: Option<(u64, Duration)>,
    /// A running hash of every raft message sent and its fate.
    digest: u64,
    /// When the first message went out; message times count from here.
    first_message: Option<tokio::time::Instant>,
}

/// Longest delay given to a single delayed message. Delays reorder
/// messages, as later ones overtake.
const MESSAGE_DELAY_MAX: Duration = Duration::from_millis(500);

impl NetFilter {
    pub fn cut(&self, from: u64, to: u64) {
        self.state.lock().unwrap().cut.insert((from, to));
    }

    /// Is either direction between the two members cut?
    pub fn separated(&self, a: u64, b: u64) -> bool {
        let state = self.state.lock().unwrap();
        state.cut.contains(&(a, b)) || state.cut.contains(&(b, a))
    }

    pub fn heal_links(&self) {
        self.state.lock().unwrap().cut.clear();
    }

    pub fn set_message_faults(&self, drop_ppm: u32, duplicate_ppm: u32, delay_ppm: u32) {
        let mut state = self.state.lock().unwrap();
        state.drop_ppm = drop_ppm;
        state.duplicate_ppm = duplicate_ppm;
        state.delay_ppm = delay_ppm;
    }

    /// Delays the replication traffic to `member` by `delay`, or ends that.
    pub fn set_lagging(&self, lagging: Option<(u64, Duration)>) {
        self.state.lock().unwrap().lagging = lagging;
    }

    /// Whether raft messages are being dropped, duplicated or delayed.
    pub fn message_faults_on(&self) -> bool {
        let state = self.state.lock().unwrap();
        state.drop_ppm + state.duplicate_ppm + state.delay_ppm > 0
    }

    /// The member whose replication traffic arrives late, if any.
    pub fn lagging(&self) -> Option<u64> {
        self.state.lock().unwrap().lagging.map(|(member, _)| member)
    }

    /// The hash of every raft message sent so far, with its fate and the
    /// virtual time: part of the run's trace hash.
    pub fn digest(&self) -> u64 {
        self.state.lock().unwrap().digest
    }
}

impl MessageFilter for NetFilter {
    fn verdict(&self, from: u64, to: u64, message: &Message) -> Verdict {
        let mut state = self.state.lock().unwrap();
        let replication = matches!(
            message.get_msg_type(),
            MessageType::MsgAppend | MessageType::MsgSnapshot | MessageType::MsgHeartbeat
        );
        let lag = state
            .lagging
            .filter(|(member, _)| *member == to && replication)
            .map(|(_, delay)| delay);
        let verdict = match (state.decide(from, to), lag) {
            (Verdict::Deliver, Some(delay)) => Verdict::Delay(delay),
            (verdict, _) => verdict,
        };
        let verdict = match verdict {
            // A forwarded proposal is a client's request: raft does not
            // deduplicate proposals (neither does etcd), and no TCP stream
            // delivers a message twice, so a copy would be a second request
            // no real network makes. The revision checks caught one applied
            // twice. Every other message raft itself may repeat.
            Verdict::Duplicate if message.get_msg_type() == MessageType::MsgPropose => {
                Verdict::Deliver
            }
            verdict => verdict,
        };
        let fate = match verdict {
            Verdict::Deliver => 0,
            Verdict::Drop => 1,
            Verdict::Duplicate => 2,
            Verdict::Delay(delay) => 3 + delay.as_nanos() as u64,
        };
        let now = tokio::time::Instant::now();
        let since_first = (now - *state.first_message.get_or_insert(now)).as_nanos() as u64;
        let words = [
            state.digest,
            since_first,
            from,
            to,
            message.get_msg_type() as u64,
            message.term,
            message.index,
            message.commit,
            message.entries.len() as u64,
            fate,
        ];
        state.digest = stable_hash(&words);
        verdict
    }
}

impl FilterState {
    fn decide(&self, from: u64, to: u64) -> Verdict {
        if self.cut.contains(&(from, to)) {
            return Verdict::Drop;
        }
        let draw = madsim::rand::thread_rng().gen_range(0..1_000_000u32);
        if draw < self.drop_ppm {
            Verdict::Drop
        } else if draw < self.drop_ppm + self.duplicate_ppm {
            Verdict::Duplicate
        } else if draw < self.drop_ppm + self.duplicate_ppm + self.delay_ppm {
            let millis =
                madsim::rand::thread_rng().gen_range(1..MESSAGE_DELAY_MAX.as_millis() as u64);
            Verdict::Delay(Duration::from_millis(millis))
        } else {
            Verdict::Deliver
        }
    }
}
