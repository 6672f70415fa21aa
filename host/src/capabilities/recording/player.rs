//! [`Player`]: a recording played back — each import call the replayed
//! guest makes is answered from the recording, in order, after checking
//! that it is the call recorded there; the clocks and random sources give
//! back what was read. The first call that differs is the divergence, and
//! nothing after it is answered.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::entry::{Call, Reply};
use super::tape::Reel;

/// Where a replayed guest's import calls first differed from the
/// recording's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Divergence {
    /// The call's number, from 1.
    pub call: usize,
    /// The call recorded there; `None` past the recording's end.
    pub recorded: Option<String>,
    /// The call the replayed guest made.
    pub replayed: String,
    /// One line saying it: `call 4: recorded kv.get("a"), replayed
    /// kv.get("b")`.
    pub message: String,
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Divergence {}

/// How far a replay went through the recording, for its report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Import calls answered from the recording.
    pub calls_replayed: usize,
    /// Recorded import calls the replayed guest never made.
    pub calls_left: usize,
    /// Clock readings past the recorded ones (answered with the last
    /// recorded reading: time stands still).
    pub extra_clock_reads: usize,
    /// Random bytes past the recorded ones (answered from a fixed
    /// sequence, the same on every replay).
    pub extra_random_bytes: usize,
}

struct Playhead {
    reel: Reel,
    next: usize,
    wall: usize,
    monotonic: usize,
    secure: usize,
    insecure: usize,
    filler: u64,
    extra_clock_reads: usize,
    extra_random_bytes: usize,
    divergence: Option<Divergence>,
}

/// A recording being replayed, shared by the replaying guest's imports
/// and WASI sources.
#[derive(Clone)]
pub struct Player(Arc<Mutex<Playhead>>);

impl Player {
    /// Plays `reel` from its start.
    pub fn new(reel: Reel) -> Self {
        Player(Arc::new(Mutex::new(Playhead {
            reel,
            next: 0,
            wall: 0,
            monotonic: 0,
            secure: 0,
            insecure: 0,
            filler: 0x9e37_79b9_7f4a_7c15,
            extra_clock_reads: 0,
            extra_random_bytes: 0,
            divergence: None,
        })))
    }

    fn lock(&self) -> MutexGuard<'_, Playhead> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The recorded answer to `call`, when it is the next call recorded;
    /// otherwise the divergence (and every later call diverges too).
    pub fn answer(&self, call: Call) -> Result<Reply, Divergence> {
        let mut head = self.lock();
        if let Some(divergence) = &head.divergence {
            return Err(divergence.clone());
        }
        let number = head.next + 1;
        let divergence = match head.reel.calls.get(head.next) {
            Some(entry) if entry.call == call => {
                // An outbound request the call ended before it was answered.
                let reply = entry
                    .reply
                    .clone()
                    .unwrap_or_else(|| Reply::Http(Err("ConnectionTimeout".to_string())));
                head.next += 1;
                return Ok(reply);
            }
            Some(entry) => Divergence {
                call: number,
                recorded: Some(entry.call.to_string()),
                replayed: call.to_string(),
                message: format!("call {number}: recorded {}, replayed {call}", entry.call),
            },
            None => {
                let truncated = if head.reel.truncated {
                    " (it passed its size bound, so later calls were not kept)"
                } else {
                    ""
                };
                Divergence {
                    call: number,
                    recorded: None,
                    replayed: call.to_string(),
                    message: format!(
                        "call {number}: replayed {call}, but the recording holds only {} calls{truncated}",
                        number - 1
                    ),
                }
            }
        };
        head.divergence = Some(divergence.clone());
        Err(divergence)
    }

    /// The next wall-clock reading.
    pub fn wall(&self) -> Duration {
        let mut head = self.lock();
        let head = &mut *head;
        let (secs, nanos) = next_reading(
            &head.reel.sources.wall,
            &mut head.wall,
            &mut head.extra_clock_reads,
        );
        Duration::new(secs, nanos)
    }

    /// The next monotonic-clock reading.
    pub fn monotonic(&self) -> u64 {
        let mut head = self.lock();
        let head = &mut *head;
        next_reading(
            &head.reel.sources.monotonic,
            &mut head.monotonic,
            &mut head.extra_clock_reads,
        )
    }

    /// Fills `buf` with the next random bytes of the `secure` or insecure
    /// stream.
    pub fn random(&self, secure: bool, buf: &mut [u8]) {
        let mut head = self.lock();
        let head = &mut *head;
        let (stream, at) = if secure {
            (&head.reel.sources.secure_random.0, &mut head.secure)
        } else {
            (&head.reel.sources.insecure_random.0, &mut head.insecure)
        };
        let recorded = stream.get(*at..).unwrap_or_default();
        let taken = recorded.len().min(buf.len());
        buf[..taken].copy_from_slice(&recorded[..taken]);
        *at += taken;
        for byte in &mut buf[taken..] {
            // splitmix64: the same filler on every replay.
            head.filler = head.filler.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = head.filler;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            *byte = (z ^ (z >> 31)) as u8;
        }
        head.extra_random_bytes += buf.len() - taken;
    }

    /// The insecure seed the recorded guest was given.
    pub fn seed(&self) -> u128 {
        self.lock().reel.sources.insecure_seed.parse().unwrap_or(0)
    }

    /// The first divergence, if there was one.
    pub fn divergence(&self) -> Option<Divergence> {
        self.lock().divergence.clone()
    }

    /// How far the replay went.
    pub fn progress(&self) -> Progress {
        let head = self.lock();
        Progress {
            calls_replayed: head.next,
            calls_left: head.reel.calls.len() - head.next,
            extra_clock_reads: head.extra_clock_reads,
            extra_random_bytes: head.extra_random_bytes,
        }
    }
}

/// The reading at `at` (then one further); past the recorded ones, the
/// last again (time stands still), counted in `extra`.
fn next_reading<T: Copy + Default>(readings: &[T], at: &mut usize, extra: &mut usize) -> T {
    if *at >= readings.len() {
        *extra += 1;
    }
    let reading = readings
        .get(*at)
        .or(readings.last())
        .copied()
        .unwrap_or_default();
    *at += 1;
    reading
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::recording::entry::{Blob, Entry};

    fn reel() -> Reel {
        let mut reel = Reel::default();
        for key in ["a", "b"] {
            reel.calls.push(Entry {
                call: Call::KvGet { key: key.into() },
                reply: Some(Reply::Value(Ok(Some(Blob(key.as_bytes().to_vec()))))),
            });
        }
        reel.sources.wall = vec![(10, 5)];
        reel.sources.secure_random = Blob(vec![1, 2, 3]);
        reel
    }

    #[test]
    fn calls_are_answered_in_order_and_the_first_difference_is_named() {
        let player = Player::new(reel());
        assert_eq!(
            player.answer(Call::KvGet { key: "a".into() }),
            Ok(Reply::Value(Ok(Some(Blob(b"a".to_vec())))))
        );
        let divergence = player
            .answer(Call::KvGet { key: "c".into() })
            .expect_err("c is not b");
        assert_eq!(
            divergence.message,
            r#"call 2: recorded kv.get("b"), replayed kv.get("c")"#
        );
        assert!(
            player.answer(Call::KvGet { key: "b".into() }).is_err(),
            "nothing after a divergence is answered"
        );
    }

    #[test]
    fn more_calls_than_recorded_diverge() {
        let player = Player::new(reel());
        for key in ["a", "b"] {
            player
                .answer(Call::KvGet { key: key.into() })
                .expect("recorded");
        }
        let divergence = player.answer(Call::AuthCaller).expect_err("past the end");
        assert_eq!(
            divergence.message,
            "call 3: replayed auth.caller(), but the recording holds only 2 calls"
        );
    }

    #[test]
    fn sources_give_back_what_was_read_then_stand_still() {
        let player = Player::new(reel());
        assert_eq!(player.wall(), Duration::new(10, 5));
        assert_eq!(player.wall(), Duration::new(10, 5));
        let mut first = [0u8; 5];
        player.random(true, &mut first);
        assert_eq!(&first[..3], &[1, 2, 3]);
        let again = Player::new(reel());
        let mut second = [0u8; 5];
        again.random(true, &mut second);
        assert_eq!(first, second, "the filler is the same on every replay");
        let progress = player.progress();
        assert_eq!(progress.extra_clock_reads, 1);
        assert_eq!(progress.extra_random_bytes, 2);
        assert_eq!(progress.calls_left, 2);
    }
}
