//! The PostgreSQL backend's kv operations: each one statement, or one
//! transaction holding the namespace's row lock ([`PostgresBackend`]'s
//! `write`), so the quota is exact across every host of a fleet.

use super::{KeyPage, KvBackend, KvError, Limits, MAX_LIST_LIMIT, Usage};
use async_trait::async_trait;
use std::time::Duration;

use super::postgres::{GET_QUERY, PostgresBackend, Step, schema, unavailable};

#[async_trait]
impl KvBackend for PostgresBackend {
    async fn get(&self, ns: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let row = self.read_one(GET_QUERY, &[&ns, &key.as_bytes()]).await?;
        row.map(|row| row.try_get(0)).transpose().map_err(schema)
    }

    async fn set(
        &self,
        ns: &str,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
        limits: Limits,
    ) -> Result<(), KvError> {
        let ttl_ms = ttl.map(|ttl| i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1));
        self.write(ns, key, limits, move |_| {
            Ok(Step::Put {
                value,
                ttl_ms,
                answer: (),
            })
        })
        .await
    }

    async fn delete(&self, ns: &str, key: &str) -> Result<bool, KvError> {
        let limits = Limits {
            quota_bytes: None,
            max_value_bytes: usize::MAX,
        };
        // An expired entry is removed too, but was not there to the caller.
        self.write(ns, key, limits, |current| {
            Ok(Step::Remove(current.is_some()))
        })
        .await
    }

    async fn exists(&self, ns: &str, key: &str) -> Result<bool, KvError> {
        let row = self
            .read_one(
                "SELECT 1 FROM kv_entries
                 WHERE ns = $1 AND key = $2 AND (expires_at IS NULL OR expires_at > now())",
                &[&ns, &key.as_bytes()],
            )
            .await?;
        Ok(row.is_some())
    }

    async fn list_keys(
        &self,
        ns: &str,
        prefix: &str,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<KeyPage, KvError> {
        let limit = limit.clamp(1, MAX_LIST_LIMIT) as i64;
        // Start at the prefix, or just after the cursor if that is later.
        let (start, inclusive) = match &cursor {
            Some(cursor) if cursor.as_str() >= prefix => (cursor.as_bytes(), false),
            _ => (prefix.as_bytes(), true),
        };
        let end = prefix_end(prefix.as_bytes());
        let client = self.db.client().await.map_err(unavailable)?;
        let statement = client
            .prepare_cached(
                "SELECT key FROM kv_entries
                 WHERE ns = $1
                   AND (key > $2 OR ($3 AND key = $2))
                   AND ($4::bytea IS NULL OR key < $4)
                   AND (expires_at IS NULL OR expires_at > now())
                 ORDER BY key LIMIT $5",
            )
            .await
            .map_err(|err| unavailable(self.db.fail(err)))?;
        let rows = client
            .query(&statement, &[&ns, &start, &inclusive, &end, &(limit + 1)])
            .await
            .map_err(|err| unavailable(self.db.fail(err)))?;
        self.db.mark_ok();
        let more = rows.len() as i64 > limit;
        let keys: Vec<String> = rows
            .iter()
            .take(limit as usize)
            .map(|row| {
                row.try_get::<_, &[u8]>(0)
                    .map(|key| String::from_utf8_lossy(key).into_owned())
            })
            .collect::<Result<_, _>>()
            .map_err(schema)?;
        let next_cursor = if more { keys.last().cloned() } else { None };
        Ok(KeyPage { keys, next_cursor })
    }

    async fn compare_and_swap(
        &self,
        ns: &str,
        key: &str,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
        limits: Limits,
    ) -> Result<bool, KvError> {
        self.write(ns, key, limits, move |current| {
            let live = current.map(|current| current.value);
            Ok(match (live == expected, new) {
                (false, _) => Step::Keep(false),
                (true, Some(value)) => Step::Put {
                    value,
                    ttl_ms: None,
                    answer: true,
                },
                (true, None) => Step::Remove(true),
            })
        })
        .await
    }

    async fn increment(
        &self,
        ns: &str,
        key: &str,
        delta: i64,
        limits: Limits,
    ) -> Result<i64, KvError> {
        self.write(ns, key, limits, move |current| {
            let (ttl_ms, number) = match current {
                None => (None, 0),
                Some(current) => (
                    current.ttl_ms.map(|ms| ms.max(1)),
                    super::backend::parse_number(&current.value)?,
                ),
            };
            let next = number.checked_add(delta).ok_or(KvError::NotANumber)?;
            Ok(Step::Put {
                value: next.to_string().into_bytes(),
                ttl_ms,
                answer: next,
            })
        })
        .await
    }

    async fn flush(&self) -> Result<(), KvError> {
        // Durable writes are committed before they are acknowledged; relaxed
        // ones reach the disk with the database's WAL writer.
        Ok(())
    }

    async fn usage(&self, ns: &str) -> Result<Usage, KvError> {
        let row = self
            .read_one(
                "SELECT keys, bytes FROM kv_namespaces WHERE ns = $1",
                &[&ns],
            )
            .await?;
        let Some(row) = row else {
            return Ok(Usage::default());
        };
        let (keys, bytes): (i64, i64) = (
            row.try_get(0).map_err(schema)?,
            row.try_get(1).map_err(schema)?,
        );
        Ok(Usage {
            keys: keys.max(0) as u64,
            bytes: bytes.max(0) as u64,
        })
    }

    async fn purge(&self, ns: &str) -> Result<(), KvError> {
        // The namespace's counts go with it: nothing is left to update.
        self.in_namespace(ns, |tx, ns| {
            Box::pin(async move {
                tx.execute(
                    "SELECT 1 FROM kv_namespaces WHERE ns = $1 FOR UPDATE",
                    &[&ns],
                )
                .await?;
                tx.execute("DELETE FROM kv_entries WHERE ns = $1", &[&ns])
                    .await?;
                tx.execute("DELETE FROM kv_namespaces WHERE ns = $1", &[&ns])
                    .await?;
                Ok(Ok(((), 0, 0)))
            })
        })
        .await
    }
}

/// The smallest byte string greater than every string starting with
/// `prefix`; `None` when there is none (empty or all `0xff`).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_ends_just_after_its_last_key() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }
}
