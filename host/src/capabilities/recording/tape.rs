//! [`Tape`]: what one call is recording as it runs — every import call
//! and its answer, in order, the clock readings and random bytes the guest
//! took, and its log lines — bounded in bytes, shared by the call's
//! capabilities and its WASI context.
//!
//! Keeping costs a push onto a vector under an uncontended lock; nothing
//! is serialized until the host decides, once the call is over, to keep
//! the recording ([`Reel`] is then written off the request path).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::entry::{Blob, Call, Entry, HttpReply, LogLine, REDACTED, Reply};

/// What a call read from the guest's clocks and random sources, each in
/// the order it was read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sources {
    /// `wasi:clocks/wall-clock.now`, as `[seconds, nanoseconds]` since
    /// the Unix epoch.
    pub wall: Vec<(u64, u32)>,
    /// `wasi:clocks/monotonic-clock.now`, in nanoseconds.
    pub monotonic: Vec<u64>,
    /// Bytes drawn from `wasi:random/random`.
    pub secure_random: Blob,
    /// Bytes drawn from `wasi:random/insecure`.
    pub insecure_random: Blob,
    /// `wasi:random/insecure-seed`, as a decimal string (a u128).
    pub insecure_seed: String,
}

/// Everything a call recorded, in the order it happened.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reel {
    /// Every import call the guest made and the host's answer.
    pub calls: Vec<Entry>,
    /// Its clocks and random sources.
    pub sources: Sources,
    /// Its log lines and printed output.
    pub logs: Vec<LogLine>,
    /// The recording passed its size bound: calls after the last one kept
    /// were not recorded, so a replay stops there.
    #[serde(default)]
    pub truncated: bool,
}

struct Recorder {
    reel: Reel,
    bytes: usize,
    limit: usize,
    /// A streamed call's request body as the guest read it, and its
    /// response body as the guest wrote it.
    read: Vec<u8>,
    written: Vec<u8>,
    /// Config values the host took from its environment: the operator's
    /// secrets, scrubbed from the URLs and log lines kept.
    secrets: Vec<String>,
}

impl Recorder {
    /// `text` with every secret the guest was handed replaced by
    /// [`REDACTED`] (as a replay hands it the guest).
    fn scrub(&self, text: &mut String) {
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                *text = text.replace(secret.as_str(), REDACTED);
            }
        }
    }
}

impl Recorder {
    /// Takes `bytes` from the bound; `false` (and the reel marked
    /// truncated) once it is spent.
    fn admit(&mut self, bytes: usize) -> bool {
        if self.reel.truncated || self.bytes.saturating_add(bytes) > self.limit {
            self.reel.truncated = true;
            return false;
        }
        self.bytes += bytes;
        true
    }
}

/// One call's recording, shared by its capabilities and WASI sources.
#[derive(Clone)]
pub struct Tape(Arc<Mutex<Recorder>>);

/// Roughly what a string or blob costs to keep.
const ENTRY_OVERHEAD: usize = 48;

fn call_bytes(call: &Call) -> usize {
    ENTRY_OVERHEAD
        + match call {
            Call::KvGet { key }
            | Call::KvDelete { key }
            | Call::KvExists { key }
            | Call::ConfigGet { key }
            | Call::KvIncrement { key, .. } => key.len(),
            Call::KvSet { key, value, .. } => key.len() + value.0.len(),
            Call::KvListKeys { prefix, cursor, .. } => {
                prefix.len() + cursor.as_ref().map_or(0, String::len)
            }
            Call::KvCompareAndSwap { key, expected, new } => {
                key.len()
                    + expected.as_ref().map_or(0, |blob| blob.0.len())
                    + new.as_ref().map_or(0, |blob| blob.0.len())
            }
            Call::AuthCaller | Call::AuthCallerError => 0,
            Call::AuthVerify { token_sha256 } => token_sha256.len(),
            Call::HttpSend { method, url } => method.len() + url.len(),
            Call::QueueSend {
                queue,
                payload,
                dedup_key,
                ..
            } => queue.len() + payload.0.len() + dedup_key.as_ref().map_or(0, String::len),
        }
}

fn reply_bytes(reply: &Reply) -> usize {
    match reply {
        Reply::Value(Ok(Some(blob))) => blob.0.len(),
        Reply::Page(Ok(page)) => page.keys.iter().map(String::len).sum(),
        Reply::Caller(Some(claims)) | Reply::Verified(Ok(claims)) => claims.json.len() * 2,
        Reply::Config(Some(super::entry::ConfigValue::Plain(value))) => value.len(),
        Reply::Http(Ok(reply)) => {
            reply.body.0.len()
                + reply
                    .headers
                    .iter()
                    .map(|(name, value)| name.len() + value.len())
                    .sum::<usize>()
        }
        _ => 0,
    }
}

impl Tape {
    /// A tape that keeps at most `limit` bytes of calls, sources and logs.
    pub fn new(limit: usize) -> Self {
        Tape(Arc::new(Mutex::new(Recorder {
            reel: Reel::default(),
            bytes: 0,
            limit,
            read: Vec::new(),
            written: Vec::new(),
            secrets: Vec::new(),
        })))
    }

    fn lock(&self) -> MutexGuard<'_, Recorder> {
        // A panic while the lock was held left a reel that is still whole.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Keeps one finished import call.
    pub fn keep(&self, call: Call, reply: Reply) {
        let mut recorder = self.lock();
        if recorder.admit(call_bytes(&call) + reply_bytes(&reply)) {
            recorder.reel.calls.push(Entry {
                call,
                reply: Some(reply),
            });
        }
    }

    /// Remembers a secret the guest was handed (a config value from the
    /// host's environment), never to be kept in what it sends or logs.
    pub fn secret(&self, value: &str) {
        // Too short to find without scrubbing everything else.
        if value.len() >= 4 {
            let mut recorder = self.lock();
            if !recorder.secrets.iter().any(|known| known == value) {
                recorder.secrets.push(value.to_string());
            }
        }
    }

    /// Keeps an outbound request as it is sent; its answer comes later
    /// ([`Tape::answer`]). The entry's index, `None` when not kept.
    pub fn send(&self, mut call: Call) -> Option<usize> {
        let mut recorder = self.lock();
        if let Call::HttpSend { url, .. } = &mut call {
            recorder.scrub(url);
        }
        if !recorder.admit(call_bytes(&call)) {
            return None;
        }
        recorder.reel.calls.push(Entry { call, reply: None });
        Some(recorder.reel.calls.len() - 1)
    }

    /// The answer to the outbound request kept at `index`.
    pub fn answer(&self, index: usize, reply: Result<HttpReply, String>) {
        let mut recorder = self.lock();
        let reply = Reply::Http(reply);
        if recorder.admit(reply_bytes(&reply))
            && let Some(entry) = recorder.reel.calls.get_mut(index)
        {
            entry.reply = Some(reply);
        }
    }

    /// A piece of the body of the response kept at `index`, as the guest
    /// reads it; `Err` when the body ended with an error.
    pub fn body(&self, index: usize, piece: Result<&[u8], String>) {
        let mut recorder = self.lock();
        let size = piece.as_ref().map_or(0, |data| data.len());
        let admitted = recorder.admit(size);
        let Some(Entry {
            reply: Some(Reply::Http(Ok(reply))),
            ..
        }) = recorder.reel.calls.get_mut(index)
        else {
            return;
        };
        match piece {
            Ok(data) if admitted => reply.body.0.extend_from_slice(data),
            // Cut short: the replay ends the body where the recording did.
            Ok(_) => reply.body_error = Some("recording truncated".to_string()),
            Err(err) => reply.body_error = Some(err),
        }
    }

    /// Keeps a line the guest logged.
    pub fn log(&self, mut line: LogLine) {
        let mut recorder = self.lock();
        recorder.scrub(&mut line.message);
        if let Some(fields) = &mut line.fields {
            recorder.scrub(fields);
        }
        let size =
            ENTRY_OVERHEAD + line.message.len() + line.fields.as_ref().map_or(0, String::len);
        if recorder.admit(size) {
            recorder.reel.logs.push(line);
        }
    }

    /// Keeps a wall-clock reading.
    pub fn wall(&self, now: Duration) {
        let mut recorder = self.lock();
        if recorder.admit(12) {
            recorder
                .reel
                .sources
                .wall
                .push((now.as_secs(), now.subsec_nanos()));
        }
    }

    /// Keeps a monotonic-clock reading.
    pub fn monotonic(&self, now: u64) {
        let mut recorder = self.lock();
        if recorder.admit(8) {
            recorder.reel.sources.monotonic.push(now);
        }
    }

    /// Keeps random bytes handed to the guest (`secure` or insecure).
    pub fn random(&self, secure: bool, bytes: &[u8]) {
        let mut recorder = self.lock();
        if recorder.admit(bytes.len()) {
            let sources = &mut recorder.reel.sources;
            let stream = if secure {
                &mut sources.secure_random
            } else {
                &mut sources.insecure_random
            };
            stream.0.extend_from_slice(bytes);
        }
    }

    /// Keeps the insecure seed the guest's context was given.
    pub fn seed(&self, seed: u128) {
        self.lock().reel.sources.insecure_seed = seed.to_string();
    }

    /// Keeps a piece of the request body as the guest reads it (`read`;
    /// the whole body at once for a droplet of our world) or of a
    /// streamed response body as the guest writes it.
    pub fn body_piece(&self, read: bool, piece: &[u8]) {
        let mut recorder = self.lock();
        if recorder.admit(piece.len()) {
            let body = if read {
                &mut recorder.read
            } else {
                &mut recorder.written
            };
            body.extend_from_slice(piece);
        }
    }

    /// As much of `bytes` as the bound still admits (all of it, or the
    /// recording is marked cut).
    pub fn clip(&self, bytes: &[u8]) -> Vec<u8> {
        let mut recorder = self.lock();
        let room = recorder
            .limit
            .saturating_sub(recorder.bytes)
            .min(bytes.len());
        if room < bytes.len() {
            recorder.reel.truncated = true;
        }
        recorder.bytes += room;
        bytes[..room].to_vec()
    }

    /// A call's request body as read (`read`) or response body
    /// as written, leaving it empty.
    pub fn take_body(&self, read: bool) -> Vec<u8> {
        let mut recorder = self.lock();
        std::mem::take(if read {
            &mut recorder.read
        } else {
            &mut recorder.written
        })
    }

    /// What was recorded, leaving the tape empty.
    pub fn take(&self) -> Reel {
        std::mem::take(&mut self.lock().reel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::recording::entry::KvFailure;

    #[test]
    fn a_tape_keeps_calls_in_order_and_stops_at_its_bound() {
        let tape = Tape::new(300);
        tape.keep(
            Call::KvGet { key: "a".into() },
            Reply::Value(Ok(Some(Blob(b"1".to_vec())))),
        );
        let sent = tape.send(Call::HttpSend {
            method: "GET".into(),
            url: "http://up/x".into(),
        });
        tape.keep(
            Call::KvGet { key: "b".into() },
            Reply::Value(Err(KvFailure::KeyTooLarge)),
        );
        let index = sent.expect("kept");
        tape.answer(
            index,
            Ok(HttpReply {
                status: 200,
                headers: Vec::new(),
                body: Blob::default(),
                body_error: None,
            }),
        );
        tape.body(index, Ok(b"hello"));
        tape.keep(
            Call::KvSet {
                key: "big".into(),
                value: Blob(vec![0; 1000]),
                ttl_ms: None,
            },
            Reply::Done(Ok(())),
        );
        let reel = tape.take();
        assert_eq!(reel.calls.len(), 3, "the set past the bound is not kept");
        assert!(reel.truncated);
        assert_eq!(reel.calls[0].call, Call::KvGet { key: "a".into() });
        match &reel.calls[1].reply {
            Some(Reply::Http(Ok(reply))) => assert_eq!(reply.body.0, b"hello"),
            other => panic!("{other:?}"),
        }
        let json = serde_json::to_string(&reel).expect("serializes");
        let secret = Tape::new(1000);
        secret.secret("s3cr3t-key");
        secret.send(Call::HttpSend {
            method: "GET".into(),
            url: "https://api.example/v1?key=s3cr3t-key".into(),
        });
        let scrubbed = secret.take();
        assert_eq!(
            scrubbed.calls[0].call,
            Call::HttpSend {
                method: "GET".into(),
                url: "https://api.example/v1?key=<redacted>".into()
            },
            "as a replay, handed <redacted>, builds it"
        );
        let back: Reel = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, reel);
        assert!(json.contains(r#""import":"kv.get","key":"a""#), "{json}");
    }
}
