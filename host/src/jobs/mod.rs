//! Work no request waits for: scheduled calls (`[[schedule]]`) and queued
//! jobs (`[[consume]]`), run on this host as background calls through the
//! same dispatch path as requests (`call`), one task per schedule
//! (`schedules`) and per consumer (`consumer`), started and stopped as the
//! table of current versions changes (`supervisor`). Which host runs what
//! is settled in the queue store: a schedule's instant and a job are each
//! held by one host at a time, under a lease.
//!
//! Beside [`crate::http`] at the top: it uses [`crate::dispatch`] and
//! everything below; nothing uses it but the binary, which starts it.

pub mod call;
pub mod consumer;
pub mod schedules;
pub mod supervisor;
