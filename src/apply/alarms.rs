//! Alarms (etcd's `AlarmStore`): replicated (member, alarm type) pairs.
//!
//! A member raises NOSPACE when a write would take the store past its
//! quota; while any NOSPACE alarm is active every member refuses writes
//! that add data (etcd's capped applier) until an operator compacts and
//! disarms it. Alarms are part of the replicated state, so they survive
//! restarts and reach new members through snapshots.

use std::collections::BTreeSet;

use crate::codec::{Reader, Writer};
use crate::proto::etcdserverpb::{AlarmMember, AlarmType};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Alarms {
    /// (member id, `AlarmType` as its protobuf number)
    active: BTreeSet<(u64, i32)>,
}

impl Alarms {
    /// Raises `alarm` for `member` (again, if it was up): the alarm.
    pub fn activate(&mut self, member: u64, alarm: i32) -> AlarmMember {
        self.active.insert((member, alarm));
        AlarmMember {
            member_id: member,
            alarm,
        }
    }

    /// Clears `alarm` for `member`; `None` if it was not raised.
    pub fn deactivate(&mut self, member: u64, alarm: i32) -> Option<AlarmMember> {
        self.active.remove(&(member, alarm)).then_some(AlarmMember {
            member_id: member,
            alarm,
        })
    }

    /// The active alarms of type `alarm`, or all of them for NONE.
    pub fn list(&self, alarm: i32) -> Vec<AlarmMember> {
        (self.active.iter())
            .filter(|(_, active)| alarm == AlarmType::None as i32 || *active == alarm)
            .map(|&(member_id, alarm)| AlarmMember { member_id, alarm })
            .collect()
    }

    /// Is the store capped (a NOSPACE alarm is up)?
    pub fn no_space(&self) -> bool {
        self.active
            .iter()
            .any(|(_, alarm)| *alarm == AlarmType::Nospace as i32)
    }

    pub fn encode(&self, writer: &mut Writer) {
        writer.u64(self.active.len() as u64);
        for &(member, alarm) in &self.active {
            writer.u64(member).u64(alarm as u64);
        }
    }

    pub fn decode(reader: &mut Reader<'_>) -> Result<Alarms, String> {
        let count = reader.u64()?;
        let mut active = BTreeSet::new();
        for _ in 0..count {
            let member = reader.u64()?;
            let alarm =
                i32::try_from(reader.u64()?).map_err(|_| "alarm type out of range".to_string())?;
            active.insert((member, alarm));
        }
        Ok(Alarms { active })
    }
}

/// How etcd prints an alarm (the protobuf text form of `AlarmMember`,
/// trailing space included): in Status errors and `etcdctl alarm list`.
pub fn describe(alarm: &AlarmMember) -> String {
    let name = AlarmType::try_from(alarm.alarm)
        .map(|alarm| alarm.as_str_name().to_string())
        .unwrap_or_else(|_| alarm.alarm.to_string());
    format!("memberID:{} alarm:{name} ", alarm.member_id)
}
