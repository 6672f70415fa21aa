//! Work no request waits for, as a manifest names it: `[[schedule]]`
//! (a call at each instant of a cron expression), `[[consume]]` (a call
//! per job of a queue) and `send_queues` (the queues the droplet may send
//! to). Checked at load, naming the field; a schedule's instants are
//! computed here, in UTC or its own time zone. A leaf besides
//! [`super::manifest_rules`].

use serde::Deserialize;

pub use super::cron::CronSchedule;
use super::manifest_rules::{MAX_BUDGET_MS, ManifestError};

/// The most schedules, consumers or send queues one manifest may name.
pub const MAX_JOB_ENTRIES: usize = 32;
/// The most attempts a consumer may give a job.
pub const MAX_ATTEMPTS: u32 = 100;
/// The most jobs a consumer may take at once.
pub const MAX_BATCH: u32 = 100;
/// The longest first backoff: an hour.
pub const MAX_BACKOFF_MS: u64 = 3_600_000;

/// One `[[schedule]]`: the droplet is called at each instant of `cron`.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// Its name, unique in the manifest (`[a-z0-9_-]`, at most 64): the
    /// `x-droplet-schedule` header the droplet gets.
    pub name: String,
    /// Five fields (minute hour day-of-month month day-of-week), or six
    /// with seconds first.
    pub cron: String,
    /// The path the droplet is called at. Default `/`.
    #[serde(default = "default_path")]
    pub path: String,
    /// The method. Default `POST`.
    #[serde(default = "default_method")]
    pub method: String,
    /// The IANA time zone the expression is read in (`Europe/Paris`).
    /// Default UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// This call's budget instead of the droplet's `budget_ms`, at most
    /// the host's maximum (300 000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_ms: Option<u64>,
    /// Instants missed while every host was down: `none` (default) or
    /// `latest`, which runs the most recent one once a host is back.
    #[serde(default)]
    pub catch_up: CatchUp,
}

/// What a schedule does about instants missed while no host ran.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    /// Skip them.
    #[default]
    None,
    /// Run the most recent one.
    Latest,
}

/// One `[[consume]]`: the droplet is called with each job of `queue`.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsumeSpec {
    /// The queue (`[a-z0-9][a-z0-9._-]*`, at most 64).
    pub queue: String,
    /// The path the droplet is called at (a `POST` whose body is the
    /// payload). Default `/`.
    #[serde(default = "default_path")]
    pub path: String,
    /// Attempts before a job goes to the dead-letter list. Default 5.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Jobs taken at once by each host, and run side by side. Default 1.
    #[serde(default = "default_batch")]
    pub batch: u32,
    /// How the wait before a retry grows: `exponential` (default,
    /// doubling, at most an hour) or `fixed`.
    #[serde(default)]
    pub backoff: Backoff,
    /// The wait before the first retry, in milliseconds. Default 1000.
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
    /// Each job call's budget instead of the droplet's `budget_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_ms: Option<u64>,
}

/// How the wait before a retry grows.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Backoff {
    /// `backoff_ms`, doubled after each failed attempt, at most an hour.
    #[default]
    Exponential,
    /// `backoff_ms` every time.
    Fixed,
}

impl ConsumeSpec {
    /// The wait before attempt `next` (2 for the first retry).
    pub fn retry_after(&self, next: u32) -> std::time::Duration {
        let base = self.backoff_ms.max(1);
        let ms = match self.backoff {
            Backoff::Fixed => base,
            Backoff::Exponential => {
                let doublings = next.saturating_sub(2).min(32);
                base.saturating_mul(1u64 << doublings).min(MAX_BACKOFF_MS)
            }
        };
        std::time::Duration::from_millis(ms)
    }
}

fn default_path() -> String {
    "/".to_string()
}
fn default_method() -> String {
    "POST".to_string()
}
fn default_max_attempts() -> u32 {
    5
}
fn default_batch() -> u32 {
    1
}
fn default_backoff_ms() -> u64 {
    1000
}

/// Whether `name` may name a queue: `[a-z0-9][a-z0-9._-]*`, at most 64
/// bytes (the host's own queues use other characters).
pub fn valid_queue_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'0'..=b'9'))
        && name.len() <= 64
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
}

/// Refuses a bad `[[schedule]]`, `[[consume]]` or `send_queues`, naming
/// the field.
pub fn validate(
    schedules: &[ScheduleSpec],
    consumers: &[ConsumeSpec],
    send_queues: &[String],
) -> Result<(), ManifestError> {
    let invalid = |field, problem: String| Err(ManifestError::Invalid { field, problem });
    if schedules.len() > MAX_JOB_ENTRIES
        || consumers.len() > MAX_JOB_ENTRIES
        || send_queues.len() > MAX_JOB_ENTRIES
    {
        return invalid(
            "schedule",
            format!(
                "a manifest names at most {MAX_JOB_ENTRIES} schedules, consumers and send queues each"
            ),
        );
    }
    for (index, schedule) in schedules.iter().enumerate() {
        let name = &schedule.name;
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'));
        if !name_ok {
            return invalid(
                "schedule.name",
                format!("`{name}` must be 1 to 64 of a-z, 0-9, `_` and `-`"),
            );
        }
        if schedules[..index].iter().any(|other| &other.name == name) {
            return invalid("schedule.name", format!("`{name}` is named twice"));
        }
        if let Err(problem) = CronSchedule::parse(&schedule.cron, schedule.timezone.as_deref()) {
            let field = if problem.contains("time zone") {
                "schedule.timezone"
            } else {
                "schedule.cron"
            };
            return invalid(field, format!("of `{name}` {problem}"));
        }
        check_path("schedule.path", &schedule.path)?;
        if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&schedule.method.as_str()) {
            return invalid(
                "schedule.method",
                format!("of `{name}` must be GET, POST, PUT, PATCH or DELETE"),
            );
        }
        check_budget("schedule.budget_ms", schedule.budget_ms)?;
    }
    for (index, consumer) in consumers.iter().enumerate() {
        let queue = &consumer.queue;
        if !valid_queue_name(queue) {
            return invalid(
                "consume.queue",
                format!(
                    "`{queue}` must be 1 to 64 of a-z, 0-9, `.`, `_` and `-`, starting with a letter or digit"
                ),
            );
        }
        if consumers[..index].iter().any(|other| &other.queue == queue) {
            return invalid("consume.queue", format!("`{queue}` is consumed twice"));
        }
        check_path("consume.path", &consumer.path)?;
        if consumer.max_attempts == 0 || consumer.max_attempts > MAX_ATTEMPTS {
            return invalid(
                "consume.max_attempts",
                format!("must be between 1 and {MAX_ATTEMPTS}"),
            );
        }
        if consumer.batch == 0 || consumer.batch > MAX_BATCH {
            return invalid(
                "consume.batch",
                format!("must be between 1 and {MAX_BATCH}"),
            );
        }
        if consumer.backoff_ms == 0 || consumer.backoff_ms > MAX_BACKOFF_MS {
            return invalid(
                "consume.backoff_ms",
                format!("must be between 1 and {MAX_BACKOFF_MS}"),
            );
        }
        check_budget("consume.budget_ms", consumer.budget_ms)?;
    }
    if let Some(queue) = send_queues.iter().find(|queue| !valid_queue_name(queue)) {
        return invalid(
            "send_queues",
            format!(
                "`{queue}` must be 1 to 64 of a-z, 0-9, `.`, `_` and `-`, starting with a letter or digit"
            ),
        );
    }
    Ok(())
}

fn check_path(field: &'static str, path: &str) -> Result<(), ManifestError> {
    let ok = path.starts_with('/')
        && path.len() <= 1024
        && http_path_chars(path)
        && !path.contains("//");
    if ok {
        Ok(())
    } else {
        Err(ManifestError::Invalid {
            field,
            problem: format!("`{path}` must be a path starting with `/` (no query)"),
        })
    }
}

fn http_path_chars(path: &str) -> bool {
    path.bytes()
        .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#')
}

fn check_budget(field: &'static str, budget_ms: Option<u64>) -> Result<(), ManifestError> {
    match budget_ms {
        Some(ms) if ms == 0 || ms > MAX_BUDGET_MS => Err(ManifestError::Invalid {
            field,
            problem: format!("must be between 1 and this host's maximum of {MAX_BUDGET_MS}"),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_entries_are_refused_naming_the_field() {
        let schedule = |cron: &str| ScheduleSpec {
            name: "cleanup".into(),
            cron: cron.into(),
            path: "/tasks".into(),
            method: "POST".into(),
            timezone: None,
            budget_ms: None,
            catch_up: CatchUp::None,
        };
        let err = validate(&[schedule("*/5 * * *")], &[], &[]).unwrap_err();
        assert!(err.to_string().contains("schedule.cron"), "{err}");
        let err = validate(&[schedule("61 * * * *")], &[], &[]).unwrap_err();
        assert!(err.to_string().contains("schedule.cron"), "{err}");
        let mut zoned = schedule("* * * * *");
        zoned.timezone = Some("Mars/Olympus".into());
        let err = validate(&[zoned], &[], &[]).unwrap_err();
        assert!(err.to_string().contains("schedule.timezone"), "{err}");
        let err = validate(&[schedule("* * * * *"), schedule("0 * * * *")], &[], &[]).unwrap_err();
        assert!(err.to_string().contains("named twice"), "{err}");
        let consumer = ConsumeSpec {
            queue: "Emails".into(),
            path: "/".into(),
            max_attempts: 5,
            batch: 1,
            backoff: Backoff::Exponential,
            backoff_ms: 1000,
            budget_ms: None,
        };
        let err = validate(&[], std::slice::from_ref(&consumer), &[]).unwrap_err();
        assert!(err.to_string().contains("consume.queue"), "{err}");
        let zero = ConsumeSpec {
            queue: "emails".into(),
            max_attempts: 0,
            ..consumer
        };
        let err = validate(&[], &[zero], &[]).unwrap_err();
        assert!(err.to_string().contains("consume.max_attempts"), "{err}");
        let err = validate(&[], &[], &["ok".into(), "no way".into()]).unwrap_err();
        assert!(err.to_string().contains("send_queues"), "{err}");
    }

    #[test]
    fn backoff_doubles_up_to_an_hour_or_stays_fixed() {
        let spec = ConsumeSpec {
            queue: "q".into(),
            path: "/".into(),
            max_attempts: 50,
            batch: 1,
            backoff: Backoff::Exponential,
            backoff_ms: 1000,
            budget_ms: None,
        };
        let waits: Vec<u64> = (2..6)
            .map(|n| spec.retry_after(n).as_millis() as u64)
            .collect();
        assert_eq!(waits, [1000, 2000, 4000, 8000]);
        assert_eq!(spec.retry_after(40).as_millis() as u64, MAX_BACKOFF_MS);
        let fixed = ConsumeSpec {
            backoff: Backoff::Fixed,
            ..spec
        };
        assert_eq!(fixed.retry_after(9).as_millis(), 1000);
    }
}
