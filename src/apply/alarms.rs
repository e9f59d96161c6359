//! Alarms (etcd's `AlarmStore`): replicated (member, alarm type) pairs.
//!
//! A member raises NOSPACE when a write would take the store past its
//! quota; while any NOSPACE alarm is active every member refuses writes
//! that add data (etcd's capped applier) until an operator compacts and
//! disarms it. Alarms are part of the replicated state, so they survive
//! restarts and reach new members through snapshots.

use std::collections::BTreeSet;

use crate::proto::etcdserverpb::{AlarmMember, AlarmType};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Alarms {
    /// (member id, `AlarmType` as its protobuf number)
    active: BTreeSet<(u64, i32)>,
}

impl Alarms {
    /// Raises `alarm` for `member` (again, if it was up): the alarm, and
    /// whether it is the first of its type now up (etcd logs "alarm
    /// raised" only then, not at every check that raises it again).
    pub fn activate(&mut self, member: u64, alarm: i32) -> (AlarmMember, bool) {
        let first = !self.active.iter().any(|(_, active)| *active == alarm);
        self.active.insert((member, alarm));
        let raised = AlarmMember {
            member_id: member,
            alarm,
        };
        (raised, first)
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

    /// Is the cluster held as corrupt (a CORRUPT alarm is up)?
    pub fn corrupt(&self) -> bool {
        self.active
            .iter()
            .any(|(_, alarm)| *alarm == AlarmType::Corrupt as i32)
    }

    /// Is the store capped (a NOSPACE alarm is up)?
    pub fn no_space(&self) -> bool {
        self.active
            .iter()
            .any(|(_, alarm)| *alarm == AlarmType::Nospace as i32)
    }

    pub fn to_stored(&self) -> Vec<AlarmMember> {
        self.list(AlarmType::None as i32)
    }

    pub fn from_stored(stored: Vec<AlarmMember>) -> Alarms {
        Alarms {
            active: (stored.into_iter())
                .map(|alarm| (alarm.member_id, alarm.alarm))
                .collect(),
        }
    }
}

/// How etcd prints an alarm (the protobuf text form of `AlarmMember`,
/// trailing space included, zero fields left out): in Status errors.
pub fn describe(alarm: &AlarmMember) -> String {
    let mut text = String::new();
    if alarm.member_id != 0 {
        text.push_str(&format!("memberID:{} ", alarm.member_id));
    }
    if alarm.alarm != AlarmType::None as i32 {
        let name = AlarmType::try_from(alarm.alarm)
            .map(|alarm| alarm.as_str_name().to_string())
            .unwrap_or_else(|_| alarm.alarm.to_string());
        text.push_str(&format!("alarm:{name} "));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_alarm_of_a_type_is_new() {
        let mut alarms = Alarms::default();
        let corrupt = AlarmType::Corrupt as i32;
        let no_space = AlarmType::Nospace as i32;
        assert!(alarms.activate(1, corrupt).1);
        assert!(!alarms.activate(1, corrupt).1, "raised again");
        assert!(!alarms.activate(2, corrupt).1, "another member's");
        assert!(alarms.activate(2, no_space).1, "another type");
        alarms.deactivate(1, corrupt);
        alarms.deactivate(2, corrupt);
        assert!(
            alarms.activate(1, corrupt).1,
            "up again after it was cleared"
        );
    }
}
