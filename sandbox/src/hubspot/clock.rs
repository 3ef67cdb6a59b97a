//! The HubSpot account's notion of time: the wall clock, which tests may move forward
//! (never back) so that what waits on time — the daily limit's reset at the account's
//! midnight, search catching up with writes — can be shown without sleeping.

use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};

/// The wall clock plus however far tests have advanced it.
#[derive(Debug, Default)]
pub struct Clock {
    ahead: Mutex<SignedDuration>,
}

impl Clock {
    /// The account's current time.
    pub fn now(&self) -> Timestamp {
        let ahead = *self.ahead.lock().expect("clock lock");
        Timestamp::now()
            .saturating_add(ahead)
            .unwrap_or(Timestamp::MAX)
    }

    /// Moves the account's time forward by `by` (a negative `by` is ignored).
    pub fn advance(&self, by: SignedDuration) {
        if by.is_positive() {
            let mut ahead = self.ahead.lock().expect("clock lock");
            *ahead = ahead.saturating_add(by);
        }
    }
}
