//! Per-rule rate limit in front of all sinks: a token bucket per rule
//! (`burst` tokens, refilled at `per_second`). A rule's first alert always
//! passes (its bucket starts full and holds at least one token); what is
//! suppressed is counted and reported in a `rate_limit` summary record, so
//! the SIEM sees that a rule kept firing even when it does not see each
//! alert.

use std::{collections::HashMap, time::Instant};

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    pub burst: u32,
    pub per_second: f64,
}

struct Bucket {
    tokens: f64,
    last: Instant,
    title: String,
    suppressed: u64,
}

pub struct Limiter {
    limit: Option<RateLimit>,
    buckets: HashMap<String, Bucket>,
}

/// One rule's suppressed alerts since the previous summary.
#[derive(Debug, PartialEq, Serialize)]
pub struct Suppressed {
    pub id: String,
    pub title: String,
    pub suppressed: u64,
}

impl Limiter {
    pub fn new(limit: Option<RateLimit>) -> Limiter {
        Limiter {
            limit,
            buckets: HashMap::new(),
        }
    }

    /// A reload may change the limit; counts carry over.
    pub fn set_limit(&mut self, limit: Option<RateLimit>) {
        self.limit = limit;
    }

    /// Whether an alert of rule `key` may go out at `now`.
    pub fn allow(&mut self, key: &str, title: &str, now: Instant) -> bool {
        let Some(limit) = self.limit else {
            return true;
        };
        let burst = f64::from(limit.burst.max(1));
        let bucket = self
            .buckets
            .entry(key.to_owned())
            .or_insert_with(|| Bucket {
                tokens: burst,
                last: now,
                title: title.to_owned(),
                suppressed: 0,
            });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * limit.per_second).min(burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            bucket.suppressed += 1;
            false
        }
    }

    /// Rules with suppressed alerts since the last call, by id; resets
    /// the counts.
    pub fn take_suppressed(&mut self) -> Vec<Suppressed> {
        let mut out: Vec<Suppressed> = self
            .buckets
            .iter_mut()
            .filter(|(_, b)| b.suppressed > 0)
            .map(|(id, b)| Suppressed {
                id: id.clone(),
                title: b.title.clone(),
                suppressed: std::mem::take(&mut b.suppressed),
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn first_alert_passes_even_with_a_zero_rate() {
        let mut l = Limiter::new(Some(RateLimit {
            burst: 1,
            per_second: 0.0,
        }));
        let t = Instant::now();
        assert!(l.allow("a", "A", t));
        assert!(!l.allow("a", "A", t));
        assert!(l.allow("b", "B", t), "another rule has its own bucket");
        assert!(!l.allow("a", "A", t + Duration::from_secs(3600)));
        assert_eq!(
            l.take_suppressed(),
            [Suppressed {
                id: "a".into(),
                title: "A".into(),
                suppressed: 2
            }]
        );
        assert_eq!(l.take_suppressed(), []);
    }

    #[test]
    fn bucket_refills_at_the_configured_rate() {
        let mut l = Limiter::new(Some(RateLimit {
            burst: 2,
            per_second: 2.0,
        }));
        let t = Instant::now();
        assert!(l.allow("a", "A", t));
        assert!(l.allow("a", "A", t));
        assert!(!l.allow("a", "A", t));
        // Half a second buys one token.
        assert!(l.allow("a", "A", t + Duration::from_millis(500)));
        assert!(!l.allow("a", "A", t + Duration::from_millis(500)));
        // Refill is capped at the burst.
        let later = t + Duration::from_secs(100);
        assert!(l.allow("a", "A", later));
        assert!(l.allow("a", "A", later));
        assert!(!l.allow("a", "A", later));
    }

    #[test]
    fn no_limit_lets_everything_through() {
        let mut l = Limiter::new(None);
        let t = Instant::now();
        assert!((0..1000).all(|_| l.allow("a", "A", t)));
        assert_eq!(l.take_suppressed(), []);
    }
}
