//! `fp:droplet/queue` (WIT 0.2.2): a job sent for later, durable when
//! `send` returns. The manifest's `send_queues` is the grant: a droplet
//! sends only to the queues it names, and one that imports the interface
//! without naming any is refused at load. The store is the host's
//! ([`crate::storage::queues`]): sled on one host, PostgreSQL on a fleet.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use wasmtime::component::{HasSelf, Linker};

use super::call_context::CallContext;
use super::capability::{Capability, StoreData};
use super::recording::entry::QueueFailure;
use super::recording::{Blob, Call, Reply, Tape};
use crate::bindings::fp::droplet::queue::{self as wit, Error, Host, SendOptions};
use crate::droplets::manifest::{Manifest, ManifestError};
use crate::storage::queues::{NewJob, QueueError, QueueStore};

/// The host-wide half: the store every queue lives in.
pub struct QueueCapability {
    /// Jobs and schedule runs.
    pub store: Arc<dyn QueueStore>,
    /// Woken at each job sent, so this host's consumers take it at once.
    pub sent: Arc<tokio::sync::Notify>,
}

/// What one call may send.
pub struct QueueAccess {
    store: Arc<dyn QueueStore>,
    sent: Arc<tokio::sync::Notify>,
    allowed: Arc<BTreeSet<String>>,
    droplet: Arc<str>,
    deadline: Instant,
    tape: Option<Tape>,
}

impl Capability for QueueCapability {
    const GRANT: Option<&'static str> = Some("queue");
    const INTERFACES: &'static [&'static str] = &["fp:droplet/queue"];
    /// The queues `send_queues` names.
    type Grant = Arc<BTreeSet<String>>;
    type Access = QueueAccess;

    fn link<T: StoreData>(
        linker: &mut Linker<T>,
        access: fn(&mut T) -> &mut QueueAccess,
    ) -> wasmtime::Result<()> {
        wit::add_to_linker::<T, HasSelf<QueueAccess>>(linker, access)
    }

    /// Naming queues in `send_queues` is the grant.
    fn granted(manifest: &Manifest) -> bool {
        !manifest.send_queues.is_empty()
    }

    fn refusal(import: &str) -> String {
        format!(
            "it imports {import}, which its manifest does not grant: name the queues it may send to in `send_queues = [...]`"
        )
    }

    fn grant(&self, manifest: &Manifest) -> Result<Self::Grant, ManifestError> {
        let listed = manifest
            .capabilities
            .as_ref()
            .is_some_and(|list| list.iter().any(|word| word == "queue"));
        if listed && manifest.send_queues.is_empty() {
            return Err(ManifestError::Invalid {
                field: "send_queues",
                problem: "must name the queues a droplet with the `queue` capability may send to"
                    .to_string(),
            });
        }
        Ok(Arc::new(manifest.send_queues.iter().cloned().collect()))
    }

    fn for_call(&self, grant: &Self::Grant, call: &CallContext<'_>) -> QueueAccess {
        QueueAccess {
            store: Arc::clone(&self.store),
            sent: Arc::clone(&self.sent),
            allowed: Arc::clone(grant),
            droplet: Arc::clone(call.droplet),
            deadline: call.deadline,
            tape: call.tape.clone(),
        }
    }
}

impl QueueAccess {
    async fn send_job(
        &self,
        queue: &str,
        payload: &[u8],
        options: &SendOptions,
    ) -> Result<u64, Error> {
        if !self.allowed.contains(queue) {
            return Err(Error::NotAllowed(format!(
                "droplet `{}` may not send to queue `{queue}`: its manifest's `send_queues` does not name it",
                self.droplet
            )));
        }
        let job = NewJob {
            queue,
            payload,
            delay: Duration::from_millis(options.delay_ms.unwrap_or(0)),
            dedup_key: options.dedup_key.as_deref(),
            hold: None,
        };
        let sent = tokio::time::timeout_at(self.deadline, self.store.send(job))
            .await
            .map_err(|_| {
                Error::Unavailable("the request's budget ran out while the job was sent".into())
            })?;
        match sent {
            Ok(sent) => {
                if !sent.duplicate {
                    self.sent.notify_waiters();
                    metrics::counter!("droplet_jobs_sent_total", "queue" => queue.to_string())
                        .increment(1);
                }
                Ok(sent.id)
            }
            Err(QueueError::Full(_)) => Err(Error::Full),
            Err(QueueError::TooLarge(_)) => Err(Error::TooLarge),
            Err(QueueError::Invalid(why)) => Err(Error::Invalid(why)),
            Err(QueueError::Unavailable(why)) => {
                tracing::warn!(droplet = %self.droplet, queue, error = %why, "a job could not be sent");
                Err(Error::Unavailable(
                    "the queue store is unavailable; the job may or may not have been sent".into(),
                ))
            }
        }
    }
}

impl Host for QueueAccess {
    async fn send(
        &mut self,
        queue: String,
        payload: Vec<u8>,
        options: SendOptions,
    ) -> Result<u64, Error> {
        let result = self.send_job(&queue, &payload, &options).await;
        if let Some(tape) = &self.tape {
            let reply = result.clone().map_err(|err| match err {
                Error::NotAllowed(why) => QueueFailure::NotAllowed(why),
                Error::TooLarge => QueueFailure::TooLarge,
                Error::Full => QueueFailure::Full,
                Error::Invalid(why) => QueueFailure::Invalid(why),
                Error::Unavailable(why) => QueueFailure::Unavailable(why),
            });
            tape.keep(
                Call::QueueSend {
                    queue,
                    payload: Blob(payload),
                    delay_ms: options.delay_ms,
                    dedup_key: options.dedup_key,
                },
                Reply::Queued(reply),
            );
        }
        result
    }
}
