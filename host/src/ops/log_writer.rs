//! The log's way to stdout: lines are appended to one shared buffer and a
//! writer thread of its own writes the buffer out in batches.
//!
//! A request never waits on a `write` syscall for its access line, and it
//! rarely wakes anything either: the writer is woken only by the first line
//! put into an empty buffer. A line after a quiet spell is written at once;
//! under load the writer writes at most once per [`LINGER`] (sooner once
//! [`WRITE_AT`] bytes wait), so the lines of that moment go out in one
//! `write`: a few hundred wake-ups and writes a second instead of one per
//! line (a channel per line, as `tracing-appender` has, costs a message
//! allocation and often a wake-up per request). Nothing is dropped: past
//! [`MAX_BUFFERED`] bytes a line waits for the writer to catch up. A line
//! reaches stdout at most [`LINGER`] plus a write after it was logged;
//! [`LogWriterGuard`]'s drop writes what is left and waits for it.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::MakeWriter;

/// How long the writer waits after its wake-up for more lines to join the
/// batch.
pub const LINGER: Duration = Duration::from_millis(5);

/// A batch this large is written at once, without lingering further.
pub const WRITE_AT: usize = 1 << 20;

/// Bytes buffered at most before a logging thread waits for the writer.
pub const MAX_BUFFERED: usize = 4 << 20;

/// The buffer and who waits on it.
struct Shared {
    state: Mutex<State>,
    /// The writer waits here for the first line or the close.
    lines_waiting: Condvar,
    /// Logging threads wait here while the buffer is full.
    room: Condvar,
}

#[derive(Default)]
struct State {
    /// Lines not yet handed to the writer.
    buffer: Vec<u8>,
    /// The writer is asleep with nothing to write: the next line wakes it.
    writer_asleep: bool,
    /// No more lines come: the writer writes what is left and stops.
    closed: bool,
}

impl Shared {
    /// The state, even if a thread panicked holding it: a log line never
    /// leaves the buffer half-written (it is appended in one call).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Hands lines to the writer thread; cheap to clone.
#[derive(Clone)]
pub struct LogWriter {
    shared: Arc<Shared>,
}

/// Keep it alive until exit: dropping it writes the lines still buffered
/// and stops the writer thread.
pub struct LogWriterGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl LogWriter {
    /// Starts the thread writing to `out`.
    pub fn start<W: Write + Send + 'static>(out: W) -> std::io::Result<(Self, LogWriterGuard)> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            lines_waiting: Condvar::new(),
            room: Condvar::new(),
        });
        let thread = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn({
                let shared = Arc::clone(&shared);
                move || write_batches(&shared, out)
            })?;
        Ok((
            Self {
                shared: Arc::clone(&shared),
            },
            LogWriterGuard {
                shared,
                thread: Some(thread),
            },
        ))
    }

    /// Appends one line (or any bytes) to the buffer.
    fn append(&self, bytes: &[u8]) {
        let mut state = self.shared.lock();
        while state.buffer.len() >= MAX_BUFFERED && !state.closed {
            state = self
                .shared
                .room
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        let before = state.buffer.len();
        state.buffer.extend_from_slice(bytes);
        // The first line of a batch wakes the writer; so does the line that
        // makes the batch large enough to write without lingering further.
        let wake = std::mem::take(&mut state.writer_asleep)
            || (before < WRITE_AT && state.buffer.len() >= WRITE_AT);
        drop(state);
        if wake {
            self.shared.lines_waiting.notify_one();
        }
    }
}

/// The writer thread: sleeps until a line comes, lingers for more if it
/// wrote less than [`LINGER`] ago (and the batch is not large yet), writes
/// the batch.
fn write_batches<W: Write>(shared: &Shared, mut out: W) {
    let mut batch = Vec::new();
    let mut last_write = Instant::now()
        .checked_sub(LINGER)
        .unwrap_or_else(Instant::now);
    loop {
        let mut state = shared.lock();
        while state.buffer.is_empty() && !state.closed {
            state.writer_asleep = true;
            state = shared
                .lines_waiting
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.writer_asleep = false;
        // A line after a quiet spell is written at once; under load a batch
        // gathers until LINGER after the previous write.
        let until = last_write + LINGER;
        while !state.closed && state.buffer.len() < WRITE_AT {
            let Some(left) = until.checked_duration_since(Instant::now()) else {
                break;
            };
            state = shared
                .lines_waiting
                .wait_timeout(state, left)
                .map(|(state, _)| state)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        }
        if state.buffer.is_empty() && state.closed {
            return;
        }
        std::mem::swap(&mut batch, &mut state.buffer);
        drop(state);
        shared.room.notify_all();
        // Stdout gone (a closed pipe) is not the host's failure: the lines
        // are dropped, the host keeps serving.
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        batch.clear();
        last_write = Instant::now();
    }
}

impl Drop for LogWriterGuard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.lines_waiting.notify_one();
        self.shared.room.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One line's writer: the formatter writes each line with one `write_all`.
impl Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.append(bytes);
        Ok(bytes.len())
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.append(bytes);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects what the writer thread writes, counting the writes.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let mut sink = self.0.lock().unwrap();
            sink.0.extend_from_slice(bytes);
            sink.1 += 1;
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().0.clone()).unwrap()
        }
    }

    #[test]
    fn lines_from_many_threads_all_arrive_whole_and_in_few_writes() {
        let sink = Sink::default();
        let (writer, guard) = LogWriter::start(sink.clone()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|thread| {
                let mut writer = writer.clone();
                std::thread::spawn(move || {
                    for line in 0..5000 {
                        writer
                            .write_all(format!("thread {thread} line {line}\n").as_bytes())
                            .unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        drop(guard);
        let text = sink.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 20_000);
        for thread in 0..4 {
            let mine: Vec<&str> = lines
                .iter()
                .copied()
                .filter(|line| line.starts_with(&format!("thread {thread} ")))
                .collect();
            let expected: Vec<String> = (0..5000)
                .map(|line| format!("thread {thread} line {line}"))
                .collect();
            assert_eq!(mine, expected, "thread {thread}'s lines, in order");
        }
        let writes = sink.0.lock().unwrap().1;
        assert!(writes < 2_000, "{writes} writes for 20000 lines");
    }

    #[test]
    fn a_lone_line_is_written_soon_without_a_flush() {
        let sink = Sink::default();
        let (mut writer, _guard) = LogWriter::start(sink.clone()).unwrap();
        for round in 0..3 {
            writer
                .write_all(format!("line {round}\n").as_bytes())
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(5);
            while !sink.text().contains(&format!("line {round}\n")) {
                assert!(Instant::now() < deadline, "line {round} never written");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    #[test]
    fn a_full_buffer_holds_the_logging_thread_back_instead_of_dropping_lines() {
        /// A stdout that takes its time.
        struct Slow(Sink);
        impl Write for Slow {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                std::thread::sleep(Duration::from_millis(20));
                self.0.write(bytes)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let (mut writer, guard) = LogWriter::start(Slow(sink.clone())).unwrap();
        let line = vec![b'x'; 64 << 10];
        let lines = 3 * MAX_BUFFERED / line.len();
        for _ in 0..lines {
            writer.write_all(&line).unwrap();
            assert!(writer.shared.lock().buffer.len() <= MAX_BUFFERED + line.len());
        }
        drop(guard);
        assert_eq!(sink.0.lock().unwrap().0.len(), lines * line.len());
    }
}
