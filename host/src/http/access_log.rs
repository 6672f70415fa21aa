//! Which requests get an access-log line: the operator's choice between
//! every request, only those not answered 2xx, a sample, or none. At tens of
//! thousands of requests a second the JSON access log is megabytes a second;
//! a line not written costs nothing (the decision is made before anything is
//! formatted).

use std::sync::atomic::{AtomicU64, Ordering};

/// What the access log records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLogMode {
    /// Every request (the default).
    All,
    /// Requests not answered 2xx.
    Errors,
    /// One request in `n`, and every request not answered 2xx.
    Sampled(u64),
    /// No access lines.
    Off,
}

/// The access log's policy, shared by every request.
#[derive(Debug)]
pub struct AccessLog {
    mode: AccessLogMode,
    seen: AtomicU64,
}

impl AccessLog {
    /// A policy of `mode`.
    pub fn new(mode: AccessLogMode) -> Self {
        Self {
            mode,
            seen: AtomicU64::new(0),
        }
    }

    /// Whether the request answered `status` gets its line.
    pub fn wants(&self, status: u16) -> bool {
        let failed = !(200..300).contains(&status);
        match self.mode {
            AccessLogMode::All => true,
            AccessLogMode::Errors => failed,
            AccessLogMode::Sampled(every) => {
                failed
                    || self
                        .seen
                        .fetch_add(1, Ordering::Relaxed)
                        .is_multiple_of(every.max(1))
            }
            AccessLogMode::Off => false,
        }
    }
}

impl Default for AccessLog {
    fn default() -> Self {
        Self::new(AccessLogMode::All)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mode_keeps_what_it_says() {
        let all = AccessLog::new(AccessLogMode::All);
        assert!(all.wants(200) && all.wants(500));
        let errors = AccessLog::new(AccessLogMode::Errors);
        assert!(!errors.wants(200) && !errors.wants(204));
        assert!(errors.wants(301) && errors.wants(404) && errors.wants(504));
        let sampled = AccessLog::new(AccessLogMode::Sampled(10));
        let kept = (0..1000).filter(|_| sampled.wants(200)).count();
        assert_eq!(kept, 100);
        assert!((0..50).all(|_| sampled.wants(503)));
        let off = AccessLog::new(AccessLogMode::Off);
        assert!(!off.wants(200) && !off.wants(500));
    }
}
