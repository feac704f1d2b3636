//! The rise/fall state machine, separate from I/O so it can be tested exactly.

/// Consecutive successes and failures of one target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RiseFall {
    up: bool,
    rise: u32,
    fall: u32,
    /// Consecutive results against the current state (successes while down, failures while
    /// up).
    streak: u32,
}

impl RiseFall {
    /// Starts in `up`; `rise` and `fall` below 1 count as 1.
    pub fn new(up: bool, rise: u32, fall: u32) -> Self {
        RiseFall {
            up,
            rise: rise.max(1),
            fall: fall.max(1),
            streak: 0,
        }
    }

    /// Current state.
    pub fn up(&self) -> bool {
        self.up
    }

    /// Records one probe result; returns the new state when it flipped.
    pub fn record(&mut self, ok: bool) -> Option<bool> {
        if ok == self.up {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if self.up { self.fall } else { self.rise };
        if self.streak >= needed {
            self.up = ok;
            self.streak = 0;
            Some(ok)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flips_after_exactly_fall_then_rise() {
        let mut s = RiseFall::new(true, 2, 3);
        assert_eq!(s.record(false), None);
        assert_eq!(s.record(false), None);
        // A success in between resets the streak.
        assert_eq!(s.record(true), None);
        assert_eq!(s.record(false), None);
        assert_eq!(s.record(false), None);
        assert_eq!(s.record(false), Some(false));
        assert!(!s.up());
        assert_eq!(s.record(false), None);
        assert_eq!(s.record(true), None);
        assert_eq!(s.record(false), None);
        assert_eq!(s.record(true), None);
        assert_eq!(s.record(true), Some(true));
        assert!(s.up());
    }

    #[test]
    fn zero_counts_mean_one() {
        let mut s = RiseFall::new(false, 0, 0);
        assert_eq!(s.record(true), Some(true));
        assert_eq!(s.record(false), Some(false));
    }
}
