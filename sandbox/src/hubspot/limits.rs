//! HubSpot's rate limits as HubSpot applies them: a rolling 10-second window per app
//! (100 / 190 / 250 requests by tier), with `X-HubSpot-RateLimit-*` headers, and 5
//! requests per second for CRM search, without headers (reference §5).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A rolling window: at most `max` requests in any `window`.
#[derive(Debug)]
pub struct RollingWindow {
    max: u32,
    window: Duration,
    hits: Mutex<VecDeque<Instant>>,
}

impl RollingWindow {
    /// A window allowing `max` requests per `window`.
    pub fn new(max: u32, window: Duration) -> Self {
        RollingWindow {
            max,
            window,
            hits: Mutex::new(VecDeque::new()),
        }
    }

    /// Counts a request if the window has room; returns the requests remaining, or
    /// `None` when the limit is reached (the request is not counted).
    pub fn hit(&self) -> Option<u32> {
        let now = Instant::now();
        let mut hits = self.hits.lock().expect("limiter lock");
        while hits
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            hits.pop_front();
        }
        if hits.len() as u32 >= self.max {
            return None;
        }
        hits.push_back(now);
        Some(self.max - hits.len() as u32)
    }

    /// The limit.
    pub fn max(&self) -> u32 {
        self.max
    }

    /// The window length.
    pub fn window(&self) -> Duration {
        self.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_down_and_refuses_at_the_limit() {
        let w = RollingWindow::new(3, Duration::from_secs(10));
        assert_eq!(w.hit(), Some(2));
        assert_eq!(w.hit(), Some(1));
        assert_eq!(w.hit(), Some(0));
        assert_eq!(w.hit(), None);
    }

    #[test]
    fn old_hits_roll_out_of_the_window() {
        let w = RollingWindow::new(1, Duration::from_millis(20));
        assert_eq!(w.hit(), Some(0));
        assert_eq!(w.hit(), None);
        std::thread::sleep(Duration::from_millis(25));
        assert_eq!(w.hit(), Some(0));
    }
}
