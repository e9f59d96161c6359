//! The nemesis: a schedule of faults drawn from the seed, applied during
//! the safety phase. Which faults are enabled and how often is decided per
//! run (`SwarmOptions`).

use std::time::Duration;

use detcd::clock::Skew;
use madsim::rand::Rng;

use detcd::probe::CrashPoint;

use super::churn::{self, Churn};
use super::cluster::SimCluster;
use super::invariants::Invariants;
use super::monitor::Monitor;
use super::operator::on_operator;
use super::options::SwarmOptions;
use super::trace::Trace;

/// Largest clock offset the nemesis sets, either way.
const SKEW_OFFSET_MAX: Duration = Duration::from_secs(10);
/// Largest drift, in parts per million (10%).
const SKEW_DRIFT_PPM_MAX: i64 = 100_000;

#[derive(Clone, Copy, Debug)]
enum Action {
    Crash,
    Restart,
    Pause,
    Resume,
    FillDisk,
    FreeDisk,
    CorruptDisk,
    Partition,
    IsolateLeader,
    Bridge,
    Heal,
    MessageFaults,
    ClockSkew,
    PowerLoss,
    ArmCrashPoint,
    MoveLeader,
    Maintenance,
    Churn,
    Lag,
}

/// The extra latency of a lagging member's replication traffic: below the
/// election timeout, so it lags without losing its leader.
const LAG: std::ops::Range<u64> = 50..400;
/// The extra time each fsync takes on a member whose disk is slow, in ms:
/// it persists, acknowledges and applies late, while clients keep reading
/// from it. Up to about the election timeout: a slow leader's followers
/// may then elect another.
const SLOW_SYNC_MS: std::ops::Range<u64> = 20..600;

/// How long the power stays off in a power loss, at most.
const POWER_OFF_MAX: Duration = Duration::from_millis(800);

fn enabled_actions(options: &SwarmOptions) -> Vec<Action> {
    let mut actions = Vec::new();
    if options.crash {
        actions.extend([Action::Crash, Action::Restart]);
    }
    if options.pause {
        actions.extend([Action::Pause, Action::Resume]);
    }
    if options.disk_full {
        actions.extend([Action::FillDisk, Action::FreeDisk]);
    }
    if options.disk_corruption {
        actions.push(Action::CorruptDisk);
    }
    if options.partition {
        actions.extend([
            Action::Partition,
            Action::IsolateLeader,
            Action::Bridge,
            Action::Heal,
        ]);
    }
    if options.message_faults {
        actions.push(Action::MessageFaults);
    }
    if options.clock_skew {
        actions.push(Action::ClockSkew);
    }
    if options.power_loss {
        actions.push(Action::PowerLoss);
    }
    if options.crash_points {
        actions.push(Action::ArmCrashPoint);
    }
    if options.leader_moves {
        actions.push(Action::MoveLeader);
    }
    if options.maintenance {
        actions.push(Action::Maintenance);
    }
    if options.churn {
        actions.push(Action::Churn);
    }
    if options.lagging {
        actions.push(Action::Lag);
    }
    actions
}

/// The power fails on every running member, or on a majority, at the same
/// instant: each loses what it had not synced, with torn tails, and all
/// come back together. The one fault that can lose a write whose bytes sat
/// only in page caches on a quorum.
async fn power_loss(
    cluster: &mut SimCluster,
    invariants: &Invariants,
    changing: bool,
    trace: &Trace,
) {
    if resume_paused(cluster, trace, "a power loss") {
        // Resumed at the very instant its peers lose power, a member can
        // still meet the artifact above: give its streams a moment.
        tokio::time::sleep(RESUME_SETTLE).await;
    }
    let mut rng = madsim::rand::thread_rng();
    let size = cluster.size();
    let lost = cluster.lost();
    let mut running: Vec<usize> = cluster
        .running()
        .into_iter()
        .filter(|i| !cluster.disk_full.contains(i) && !lost.contains(i))
        .collect();
    if rng.gen_bool(0.3) {
        // A majority of the members, not all.
        let majority = size / 2 + 1;
        while running.len() > majority {
            running.remove(rng.gen_range(0..running.len()));
        }
    }
    if running.is_empty() {
        return;
    }
    for &member in &running {
        cluster.crash(member);
    }
    cluster.note_stretch(invariants.slow_disk(), changing, true);
    trace.record(format!("nemesis: power loss on {running:?}"));
    let off = rng.gen_range(1..=POWER_OFF_MAX.as_millis() as u64);
    drop(rng);
    tokio::time::sleep(Duration::from_millis(off)).await;
    for &member in &running {
        cluster.restart(member);
    }
    cluster.note_stretch(invariants.slow_disk(), changing, true);
    trace.record(format!("nemesis: power back on {running:?}"));
}

/// How often the nemesis looks for members stopped at a crash point.
const CRASH_POINT_POLL: Duration = Duration::from_millis(20);

/// Runs faults until `safety_phase` has passed since the call. Returns a
/// member replacement still under way, for `churn::finish` once healed.
pub async fn run(
    cluster: &mut SimCluster,
    options: &SwarmOptions,
    safety_phase: Duration,
    trace: &Trace,
    monitor: &Monitor,
    invariants: &Invariants,
    operator: &madsim::runtime::NodeHandle,
) -> Option<Churn> {
    let end = tokio::time::Instant::now() + safety_phase;
    let actions = enabled_actions(options);
    cluster.note_stretch(invariants.slow_disk(), false, true);
    if actions.is_empty() {
        tokio::time::sleep(safety_phase).await;
        return None;
    }
    let mut churn: Option<Churn> = None;
    let interval_ms = options.nemesis_interval.as_millis() as u64;
    loop {
        let pause = Duration::from_millis(
            madsim::rand::thread_rng().gen_range(interval_ms / 2..=interval_ms * 3 / 2),
        );
        let until = tokio::time::Instant::now() + pause;
        // Wait, crashing any member that stopped at a crash point meanwhile.
        while tokio::time::Instant::now() < until.min(end) {
            tokio::time::sleep(CRASH_POINT_POLL).await;
            crash_at_points(cluster, invariants, churn.is_some(), trace);
        }
        if until >= end {
            invariants.disarm_all();
            crash_at_points(cluster, invariants, churn.is_some(), trace);
            return churn;
        }
        // A replacement under way takes its next step on every tick.
        if let Some(step) = churn {
            churn = churn::advance(
                step,
                cluster,
                monitor.current_leader(&cluster.member_ids),
                operator,
                trace,
            )
            .await;
            cluster.note_stretch(invariants.slow_disk(), churn.is_some(), false);
        }
        let action = actions[madsim::rand::thread_rng().gen_range(0..actions.len())];
        if let Action::Churn = action {
            if churn.is_none() && cluster.size() >= 3 {
                // A member whose disk rotted (or failed its checks) is the
                // one to replace: while it is out the cluster refuses other
                // changes as unhealthy. Otherwise any running one, if the
                // quorum holds without it (the cluster refuses a removal
                // that breaks it).
                let mut broken = cluster.lost();
                broken.extend(cluster.corrupted.iter().copied());
                let victim = match broken.first() {
                    Some(&broken) => Some(broken),
                    None if can_take_one_out(cluster) => {
                        pick(&mut madsim::rand::thread_rng(), cluster.running())
                    }
                    None => None,
                };
                churn = victim.map(|victim| churn::start(cluster, victim, trace));
                cluster.note_stretch(invariants.slow_disk(), churn.is_some(), false);
            }
            continue;
        }
        // Bit rot elsewhere while a member is being replaced could leave
        // too few started members for the cluster to take the change.
        if matches!(action, Action::CorruptDisk) && churn.is_some() {
            continue;
        }
        if let Action::PowerLoss = action {
            power_loss(cluster, invariants, churn.is_some(), trace).await;
            continue;
        }
        if let Action::MoveLeader = action {
            cluster.note_stretch(invariants.slow_disk(), churn.is_some(), true);
            move_leader(
                cluster,
                monitor.current_leader(&cluster.member_ids),
                operator,
                trace,
            )
            .await;
            cluster.note_stretch(invariants.slow_disk(), churn.is_some(), true);
            continue;
        }
        if let Action::Maintenance = action {
            cluster.note_stretch(invariants.slow_disk(), churn.is_some(), true);
            maintenance(cluster, operator, trace).await;
            cluster.note_stretch(invariants.slow_disk(), churn.is_some(), true);
            continue;
        }
        // Pauses and crash points never overlap (see `resume_paused`).
        if let Action::ArmCrashPoint = action {
            if !cluster.paused.is_empty() {
                continue;
            }
            let points = CrashPoint::ALL;
            let point = points[madsim::rand::thread_rng().gen_range(0..points.len())];
            invariants.arm(point);
            trace.record(format!("nemesis: arm crash point {point:?}"));
            continue;
        }
        if matches!(action, Action::Pause) && invariants.armed() {
            continue;
        }
        let event = act(
            cluster,
            options,
            action,
            monitor.current_leader(&cluster.member_ids),
            invariants,
        );
        // Even with no event: a crash for bit rot that found nothing to rot
        // still crashed a member.
        cluster.note_stretch(invariants.slow_disk(), churn.is_some(), false);
        if let Some(event) = event {
            trace.record(format!("nemesis: {event}"));
        }
    }
}

/// How long the operator's Defragment or Snapshot may take.
const MAINTENANCE_TIMEOUT: Duration = Duration::from_secs(3);

/// An operator's Defragment (detcd: the backend's durable point marked in
/// the WAL, old segments released, the backend file compacted) or Snapshot (a backup streamed out) on a running
/// member, at a time the seed picks: both run beside the faults and the
/// load, as operators run them.
async fn maintenance(cluster: &SimCluster, operator: &madsim::runtime::NodeHandle, trace: &Trace) {
    let (member, defragment) = {
        let mut rng = madsim::rand::thread_rng();
        let member = pick(&mut rng, cluster.running());
        (member, rng.gen_bool(0.5))
    };
    let Some(member) = member else { return };
    let url = super::cluster::client_url(member);
    let call = async move {
        use detcd::proto::etcdserverpb::{
            maintenance_client::MaintenanceClient, DefragmentRequest, SnapshotRequest,
        };
        let mut client: MaintenanceClient<_> = MaintenanceClient::connect(url)
            .await
            .map_err(|error| error.to_string())?;
        if defragment {
            client
                .defragment(DefragmentRequest {})
                .await
                .map_err(|status| status.message().to_string())?;
            return Ok("defragmented".to_string());
        }
        let mut stream = client
            .snapshot(SnapshotRequest {})
            .await
            .map_err(|status| status.message().to_string())?
            .into_inner();
        let mut bytes = 0;
        while let Some(part) = stream
            .message()
            .await
            .map_err(|status| status.message().to_string())?
        {
            bytes += part.blob.len();
        }
        Ok(format!("snapshot of {bytes} bytes"))
    };
    let outcome = on_operator(operator, MAINTENANCE_TIMEOUT, call).await;
    trace.record(format!(
        "nemesis: maintenance on m{member}: {}",
        outcome.unwrap_or_else(|error| format!("failed: {error}"))
    ));
}

/// How long the operator's MoveLeader may take before it gives up.
const MOVE_LEADER_TIMEOUT: Duration = Duration::from_secs(3);

/// An operator hands leadership from the leader to a running voter
/// (etcdctl move-leader), during whatever faults are on: a transfer under
/// partitions, message loss or a crash must leave raft safe.
async fn move_leader(
    cluster: &SimCluster,
    leader: Option<usize>,
    operator: &madsim::runtime::NodeHandle,
    trace: &Trace,
) {
    let Some(leader) = leader else { return };
    let target = {
        let mut rng = madsim::rand::thread_rng();
        pick(
            &mut rng,
            cluster.running().into_iter().filter(|i| *i != leader),
        )
    };
    let Some(target) = target else { return };
    let target_id = cluster.member_ids[target];
    let url = super::cluster::client_url(leader);
    let call = async move {
        let mut client =
            detcd::proto::etcdserverpb::maintenance_client::MaintenanceClient::connect(url)
                .await
                .map_err(|error| error.to_string())?;
        client
            .move_leader(detcd::proto::etcdserverpb::MoveLeaderRequest { target_id })
            .await
            .map(|_| "ok".to_string())
            .map_err(|status| status.message().to_string())
    };
    let outcome = on_operator(operator, MOVE_LEADER_TIMEOUT, call).await;
    trace.record(format!(
        "nemesis: move leader m{leader} -> m{target}: {}",
        outcome.unwrap_or_else(|error| error)
    ));
}

/// Ends every pause before members restart: in madsim a paused member
/// whose peers restart meanwhile never gets a stream through to them again
/// after it resumes (a new connection from it is never accepted; real TCP
/// resets and reconnects). That artifact is not what these faults test.
/// Returns whether any member was paused.
pub(crate) fn resume_paused(cluster: &mut SimCluster, trace: &Trace, before: &str) -> bool {
    let paused: Vec<usize> = cluster.paused.iter().copied().collect();
    for &member in &paused {
        cluster.resume(member);
        trace.record(format!("nemesis: resume m{member} (before {before})"));
    }
    !paused.is_empty()
}

/// How long resumed members run before a power loss strikes their peers.
pub(crate) const RESUME_SETTLE: Duration = Duration::from_millis(300);

/// A member that stopped at a crash point crashes there: its unsynced
/// bytes are lost, as at a power failure at that instant. It restarts at
/// once, so the next thing it does is recover from exactly that state.
fn crash_at_points(
    cluster: &mut SimCluster,
    invariants: &Invariants,
    changing_membership: bool,
    trace: &Trace,
) {
    for (member_id, point) in invariants.take_crashed() {
        let Some(index) = cluster.member_ids.iter().position(|id| *id == member_id) else {
            continue;
        };
        if cluster.down.contains(&index) || cluster.retired.contains(&index) {
            continue;
        }
        resume_paused(cluster, trace, "a crash point");
        let how = cluster.crash_or_kill(index);
        cluster.restart(index);
        cluster.note_stretch(invariants.slow_disk(), changing_membership, true);
        trace.record(format!("nemesis: m{index} {how} at {point:?}, restarted"));
    }
}

/// One of `candidates`, drawn from the seed; `None` if there are none.
fn pick(rng: &mut impl Rng, candidates: impl IntoIterator<Item = usize>) -> Option<usize> {
    let candidates: Vec<usize> = candidates.into_iter().collect();
    candidates
        .get(rng.gen_range(0..candidates.len().max(1)))
        .copied()
}

/// Another member may be taken out without losing the quorum: keep one up
/// most of the time, so histories have substance.
fn can_take_one_out(cluster: &SimCluster) -> bool {
    cluster.unavailable() < (cluster.size() - 1) / 2
}

fn act(
    cluster: &mut SimCluster,
    options: &SwarmOptions,
    action: Action,
    leader: Option<usize>,
    invariants: &Invariants,
) -> Option<String> {
    let mut rng = madsim::rand::thread_rng();
    let size = cluster.size();
    match action {
        Action::Crash => {
            if !can_take_one_out(cluster) {
                return None;
            }
            let victim = pick(&mut rng, cluster.running())?;
            let how = cluster.crash_or_kill(victim);
            Some(format!("m{victim} {how}"))
        }
        Action::Restart => {
            let back = pick(&mut rng, cluster.down.iter().copied())?;
            cluster.restart(back);
            Some(format!("restart m{back}"))
        }
        Action::FillDisk => {
            if !can_take_one_out(cluster) {
                return None;
            }
            let victim = pick(
                &mut rng,
                cluster
                    .running()
                    .into_iter()
                    .filter(|i| !cluster.disk_full.contains(i)),
            )?;
            cluster.fill_disk(victim);
            Some(format!("disk of m{victim} full"))
        }
        Action::FreeDisk => {
            let freed = pick(&mut rng, cluster.disk_full.iter().copied())?;
            if cluster.down.contains(&freed) {
                return None;
            }
            cluster.free_disk(freed);
            Some(format!("disk of m{freed} freed, member restarted"))
        }
        Action::CorruptDisk => {
            // One member at most, so a quorum keeps trustworthy data.
            if !cluster.corrupted.is_empty() {
                return None;
            }
            // Bit rot strikes a disk at rest: a member that is down, or one
            // crashed for the purpose.
            let (victim, crashed) = match pick(&mut rng, cluster.down.iter().copied()) {
                Some(victim) => (victim, ""),
                None if can_take_one_out(cluster) => {
                    let lost = cluster.lost();
                    let victim = pick(
                        &mut rng,
                        (0..size).filter(|i| {
                            !cluster.paused.contains(i)
                                && !lost.contains(i)
                                && !cluster.retired.contains(i)
                        }),
                    )?;
                    cluster.crash(victim);
                    (victim, "crash, then ")
                }
                None => return None,
            };
            let flipped = cluster.corrupt_disk(victim)?;
            Some(format!("{crashed}disk of m{victim} corrupted: {flipped}"))
        }
        Action::Pause => {
            if !can_take_one_out(cluster) {
                return None;
            }
            let victim = pick(&mut rng, cluster.running())?;
            cluster.pause(victim);
            Some(format!("pause m{victim}"))
        }
        Action::Resume => {
            let back = pick(&mut rng, cluster.paused.iter().copied())?;
            cluster.resume(back);
            Some(format!("resume m{back}"))
        }
        Action::Partition => {
            cluster.heal_links();
            let mut side: Vec<usize> = (0..size).filter(|_| rng.gen_bool(0.5)).collect();
            if side.is_empty() || side.len() == size {
                side = vec![rng.gen_range(0..size)];
            }
            let one_way = rng.gen_bool(0.2);
            for &inside in &side {
                for outside in (0..size).filter(|i| !side.contains(i)) {
                    cluster.cut(inside, outside);
                    if !one_way {
                        cluster.cut(outside, inside);
                    }
                }
            }
            cluster.sync_client_links();
            Some(format!(
                "partition {side:?} from the rest{}",
                if one_way { " (one way)" } else { "" }
            ))
        }
        Action::IsolateLeader => {
            let leader = leader?;
            cluster.heal_links();
            cluster.isolate(leader);
            Some(format!("isolate the leader m{leader}"))
        }
        Action::Bridge => {
            // Two halves that cannot talk, and one member both can reach.
            if size < 3 {
                return None;
            }
            cluster.heal_links();
            let bridge = rng.gen_range(0..size);
            let others: Vec<usize> = (0..size).filter(|&i| i != bridge).collect();
            let (left, right) = others.split_at(others.len() / 2);
            for &a in left {
                for &b in right {
                    cluster.cut(a, b);
                    cluster.cut(b, a);
                }
            }
            cluster.sync_client_links();
            Some(format!(
                "bridge: {left:?} and {right:?} meet only through m{bridge}"
            ))
        }
        Action::Heal => {
            cluster.heal_links();
            Some("heal partitions".into())
        }
        Action::MessageFaults => {
            if rng.gen_bool(0.5) {
                cluster.filter.set_message_faults(
                    options.drop_ppm,
                    options.duplicate_ppm,
                    options.delay_ppm,
                );
                Some("message faults on".into())
            } else {
                cluster.filter.set_message_faults(0, 0, 0);
                Some("message faults off".into())
            }
        }
        // Handled by `run`: they wait for what they started.
        Action::PowerLoss
        | Action::ArmCrashPoint
        | Action::MoveLeader
        | Action::Maintenance
        | Action::Churn => None,
        // One member falls behind while clients keep reading from it:
        // the appends sent to it arrive late, or its disk is slow.
        Action::Lag => {
            if rng.gen_bool(0.5) {
                cluster.filter.set_lagging(None);
                invariants.set_slow_disk(None);
                return Some("no member lags".into());
            }
            let member = pick(&mut rng, cluster.running())?;
            // One lagging member at a time: the new lag replaces the old.
            if rng.gen_bool(0.5) {
                let delay = Duration::from_millis(rng.gen_range(LAG));
                invariants.set_slow_disk(None);
                cluster
                    .filter
                    .set_lagging(Some((cluster.member_ids[member], delay)));
                Some(format!("m{member} lags: its appends arrive {delay:?} late"))
            } else {
                let extra = Duration::from_millis(rng.gen_range(SLOW_SYNC_MS));
                cluster.filter.set_lagging(None);
                invariants.set_slow_disk(Some((cluster.member_ids[member], extra)));
                Some(format!(
                    "m{member} lags: its disk is slow, each fsync {extra:?} longer"
                ))
            }
        }
        Action::ClockSkew => {
            let index = rng.gen_range(0..size);
            let offset = rng
                .gen_range(-(SKEW_OFFSET_MAX.as_nanos() as i64)..SKEW_OFFSET_MAX.as_nanos() as i64);
            let drift_ppm = rng.gen_range(-SKEW_DRIFT_PPM_MAX..SKEW_DRIFT_PPM_MAX);
            cluster.set_skew(
                index,
                Skew {
                    offset_nanos: offset,
                    drift_ppm,
                },
            );
            Some(format!(
                "clock of m{index}: offset {}ms drift {drift_ppm}ppm",
                offset / 1_000_000
            ))
        }
    }
}
