//! Deadlines: when a blocking call gives up. Time only (no system call);
//! every wait of the crate takes one (see [`sync::wait`](crate::sync::wait)).

use std::time::{Duration, Instant};

/// An optional point in time after which a blocking call gives up.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline(Option<Instant>);

impl Deadline {
    /// No deadline: wait forever.
    pub(crate) const NEVER: Deadline = Deadline(None);

    /// `timeout` from now. A timeout too large to represent is "never".
    pub(crate) fn after(timeout: Duration) -> Deadline {
        Deadline(Instant::now().checked_add(timeout))
    }

    /// The deadline at `t`.
    #[cfg_attr(not(feature = "listener"), allow(dead_code))]
    pub(crate) fn at(t: Instant) -> Deadline {
        Deadline(Some(t))
    }

    /// The earlier of `self` and `other` ("never" is later than any).
    #[cfg_attr(not(feature = "listener"), allow(dead_code))]
    pub(crate) fn min(self, other: Deadline) -> Deadline {
        match (self.0, other.0) {
            (Some(a), Some(b)) => Deadline(Some(a.min(b))),
            (a, b) => Deadline(a.or(b)),
        }
    }

    /// `None` for "never"; `Some(ZERO)` once the deadline has passed.
    pub(crate) fn remaining(&self) -> Option<Duration> {
        self.0.map(|t| t.saturating_duration_since(Instant::now()))
    }

    /// Whether the deadline has passed.
    pub(crate) fn expired(&self) -> bool {
        self.remaining() == Some(Duration::ZERO)
    }

    /// The time to sleep before looking around again: the remaining time,
    /// capped at `slice`.
    pub(crate) fn slice(&self, slice: Duration) -> Duration {
        match self.remaining() {
            Some(r) => r.min(slice),
            None => slice,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_caps_slices_and_expires() {
        assert_eq!(Deadline::NEVER.remaining(), None);
        assert!(!Deadline::NEVER.expired());
        assert_eq!(
            Deadline::NEVER.slice(Duration::from_millis(7)),
            Duration::from_millis(7)
        );
        let d = Deadline::after(Duration::from_secs(3600));
        assert_eq!(d.slice(Duration::from_millis(7)), Duration::from_millis(7));
        assert!(d.slice(Duration::from_secs(7200)) <= Duration::from_secs(3600));
        let past = Deadline::after(Duration::ZERO);
        assert!(past.expired());
        assert_eq!(past.slice(Duration::from_secs(1)), Duration::ZERO);
        // Too far to represent: never.
        assert!(Deadline::after(Duration::MAX).remaining().is_none());
        // The earlier of two; "never" loses to any.
        let soon = Deadline::at(Instant::now());
        assert!(soon.min(Deadline::NEVER).expired());
        assert!(Deadline::NEVER.min(soon).expired());
        assert!(d.min(soon).expired());
        assert!(Deadline::NEVER.min(Deadline::NEVER).remaining().is_none());
    }
}
