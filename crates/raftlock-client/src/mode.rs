//! Lock modes between the client's [`LockMode`] and the wire's
//! `LockMode` enum plus `limit` field.

use raftlock_core::LockMode;
use raftlock_proto::v1::LockMode as WireMode;

/// The `mode` and `limit` fields of an Acquire for `mode`.
pub(crate) fn to_wire(mode: LockMode) -> (WireMode, u32) {
    match mode {
        LockMode::Exclusive => (WireMode::Exclusive, 0),
        LockMode::Shared => (WireMode::Shared, 0),
        LockMode::Semaphore { limit } => (WireMode::Semaphore, limit),
    }
}

/// The mode a holder or waiter has, from its `mode` field and its lock's
/// `limit`. `None` for a mode this client does not know (a newer server),
/// so callers show it as unknown rather than guess.
pub fn mode_from_wire(mode: i32, limit: u32) -> Option<LockMode> {
    match WireMode::try_from(mode).ok()? {
        WireMode::Exclusive => Some(LockMode::Exclusive),
        WireMode::Shared => Some(LockMode::Shared),
        WireMode::Semaphore => Some(LockMode::Semaphore { limit }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mode_goes_to_the_wire_and_back() {
        for mode in [
            LockMode::Exclusive,
            LockMode::Shared,
            LockMode::Semaphore { limit: 1 },
            LockMode::Semaphore { limit: 65_536 },
        ] {
            let (wire, limit) = to_wire(mode);
            assert_eq!(mode_from_wire(wire as i32, limit), Some(mode));
        }
    }

    #[test]
    fn only_semaphores_send_a_limit() {
        assert_eq!(to_wire(LockMode::Exclusive).1, 0);
        assert_eq!(to_wire(LockMode::Shared).1, 0);
        assert_eq!(to_wire(LockMode::Semaphore { limit: 3 }).1, 3);
    }

    #[test]
    fn an_unknown_mode_is_none() {
        assert_eq!(mode_from_wire(99, 0), None);
        assert_eq!(mode_from_wire(-1, 2), None);
    }
}
