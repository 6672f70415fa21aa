//! Jobs for later: a payload sent to a queue, run by the droplet that
//! consumes it after this request has answered.
//!
//! The sender's manifest names the queues it may send to; the consumer's
//! names the queue it drains and how:
//!
//! ```toml
//! # the sender's manifest
//! send_queues = ["emails"]
//!
//! # the consumer's manifest
//! [[consume]]
//! queue = "emails"
//! path = "/jobs/email"   # called with POST, the payload as its body
//! max_attempts = 5       # then the job goes to the dead-letter list
//! ```
//!
//! A job is durable once [`send`] returns. The consumer answers 2xx to
//! acknowledge it; anything else (an error, a trap, an overrun) is retried
//! with backoff. [`Request::job`](crate::Request::job) says which job and
//! attempt a call is.
//!
//! ```
//! use droplet_sdk::{queue, Request, Result};
//! use std::time::Duration;
//!
//! fn signup(req: Request) -> Result<String> {
//!     let email = req.text()?.to_string();
//!     let id = queue::send("emails", email.as_bytes())?;
//!     // Once per address in an hour, at the earliest in a minute:
//!     let options = queue::Options::new()
//!         .delay(Duration::from_secs(60))
//!         .dedup_key(&format!("reminder:{email}"));
//!     queue::send_with("emails", b"reminder", &options)?;
//!     Ok(format!("queued job {id}"))
//! }
//! # let mut world = droplet_sdk::testing::TestWorld::new();
//! # let answer = world.call(signup, Request::post("/", "ada@example.com"));
//! # assert_eq!(world.sent()[0].queue, "emails");
//! # assert_eq!(answer.body_text(), Some("queued job 1"));
//! ```

use std::time::Duration;

use crate::host::queue as wit;

pub use crate::bindings::fp::droplet::queue::Error;

/// How a job is sent: after a delay, once per dedup key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    delay: Option<Duration>,
    dedup_key: Option<String>,
}

impl Options {
    /// Send at once, without a dedup key.
    pub fn new() -> Self {
        Self::default()
    }

    /// Run the job no sooner than `delay` from now (at most seven days).
    ///
    /// ```
    /// let later = droplet_sdk::queue::Options::new().delay(std::time::Duration::from_secs(30));
    /// # let _ = later;
    /// ```
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// A second send with the same key to the same queue within an hour
    /// sends nothing and returns the first job's id.
    ///
    /// ```
    /// let once = droplet_sdk::queue::Options::new().dedup_key("invoice:42");
    /// let first = droplet_sdk::queue::send_with("billing", b"42", &once)?;
    /// assert_eq!(droplet_sdk::queue::send_with("billing", b"42", &once)?, first);
    /// # Ok::<(), droplet_sdk::queue::Error>(())
    /// ```
    pub fn dedup_key(mut self, key: &str) -> Self {
        self.dedup_key = Some(key.to_string());
        self
    }
}

/// Sends `payload` to `queue`; the job's id, once it is durable.
///
/// ```
/// let id = droplet_sdk::queue::send("emails", b"ada@example.com")?;
/// # assert!(id > 0);
/// # Ok::<(), droplet_sdk::queue::Error>(())
/// ```
pub fn send(queue: &str, payload: &[u8]) -> Result<u64, Error> {
    send_with(queue, payload, &Options::new())
}

/// Sends `payload` to `queue` with `options`.
///
/// ```
/// use droplet_sdk::queue::{self, Options};
///
/// let id = queue::send_with("emails", b"later", &Options::new().delay(std::time::Duration::from_secs(5)))?;
/// # assert!(id > 0);
/// # Ok::<(), droplet_sdk::queue::Error>(())
/// ```
pub fn send_with(queue: &str, payload: &[u8], options: &Options) -> Result<u64, Error> {
    let options = wit::SendOptions {
        delay_ms: options
            .delay
            .map(|delay| u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)),
        dedup_key: options.dedup_key.clone(),
    };
    wit::send(queue, payload, &options)
}

/// Sends `value` as JSON.
///
/// ```
/// droplet_sdk::queue::send_json("emails", &serde_json::json!({"to": "ada@example.com"}))?;
/// # Ok::<(), droplet_sdk::Error>(())
/// ```
#[cfg(feature = "json")]
pub fn send_json<T: serde::Serialize + ?Sized>(
    queue: &str,
    value: &T,
) -> Result<u64, crate::Error> {
    let payload = serde_json::to_vec(value)
        .map_err(|err| crate::Error::internal(format!("the job is not JSON: {err}")))?;
    Ok(send(queue, &payload)?)
}
