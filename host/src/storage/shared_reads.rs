//! Reads that share connections: a few of the pool's connections, each used
//! by every single-statement read that comes along, so reads running at the
//! same time are pipelined — `tokio-postgres` writes them to the database
//! together and the server answers them together — instead of each taking a
//! connection of its own and paying its own send, server wake-up and reply.
//!
//! Only statements that stand alone (no transaction, no session state) go
//! here; a transaction still takes a connection of its own from the pool.
//! A shared connection that closed is replaced from the pool on its next
//! use, so a database that went away and came back is picked up again as
//! the pool's own connections are.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arc_swap::ArcSwapOption;
use deadpool_postgres::Object;
use tokio::sync::Mutex;

use super::database::{Database, DbError};

/// The pool's connections per shared one: a quarter of the pool at most is
/// kept for reads, the rest for transactions.
const POOL_SHARE: usize = 4;

/// How many of a pool of `pool_size` connections standalone reads share:
/// as many as the machine has cores, but never more than a quarter of the
/// pool; none for a pool of fewer than four, whose reads then take a
/// connection each, as transactions do.
pub fn shared_connections(pool_size: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    (pool_size / POOL_SHARE).min(cores)
}

/// A few pooled connections shared by standalone reads.
pub struct SharedReads {
    db: Arc<Database>,
    slots: Box<[Slot]>,
    /// The slot the next read takes (in turn).
    next: AtomicUsize,
}

/// One shared connection, once a read has needed it.
#[derive(Default)]
struct Slot {
    client: ArcSwapOption<Object>,
    /// Held while the slot takes a connection from the pool, so reads that
    /// find it empty together wait for one connection rather than each
    /// taking its own.
    filling: Mutex<()>,
}

impl SharedReads {
    /// [`shared_connections`] of `db`'s pool, each taken from the pool the
    /// first time a read needs it.
    pub fn new(db: Arc<Database>) -> Self {
        let slots = (0..shared_connections(db.pool_size()))
            .map(|_| Slot::default())
            .collect();
        Self {
            db,
            slots,
            next: AtomicUsize::new(0),
        }
    }

    /// A connection for one standalone statement: a shared one, taken in
    /// turn, or, with none to share, one of the pool's.
    pub async fn client(&self) -> Result<Arc<Object>, DbError> {
        if self.slots.is_empty() {
            return self.db.client().await.map(Arc::new);
        }
        let slot = &self.slots[self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len()];
        if let Some(client) = slot.open() {
            return Ok(client);
        }
        let _filling = slot.filling.lock().await;
        if let Some(client) = slot.open() {
            return Ok(client);
        }
        let fresh = Arc::new(self.db.client().await?);
        slot.client.store(Some(Arc::clone(&fresh)));
        Ok(fresh)
    }
}

impl Slot {
    /// The slot's connection, unless it has none or the database closed it.
    fn open(&self) -> Option<Arc<Object>> {
        self.client.load_full().filter(|client| !client.is_closed())
    }
}
