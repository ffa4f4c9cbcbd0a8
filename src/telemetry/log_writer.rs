//! Where log lines go: stdout, written in batches by a thread of their own.
//!
//! Writing each line to stdout as it is made costs one system call per line on the thread that
//! serves the request: with a line per request, about half of what logging costs an invocation
//! (bench/telemetry.sh, `ON_LOG_TO=/dev/null` against a file). Here a line is appended to a
//! buffer in memory (a lock and a copy); the writer thread wakes when the first line arrives,
//! gathers lines for [`GATHER`] and writes them all at once.
//!
//! What this changes for an operator: a line reaches stdout at most [`GATHER`] after it was
//! logged; a process ended with SIGKILL (or aborted) loses the lines of its last [`GATHER`]. A
//! process that ends by itself (SIGTERM, an error at start-up) writes every line first: `main`
//! holds a [`Flush`] until it returns. If stdout cannot keep up, the buffer stops growing at
//! [`MAX_PENDING`] and the threads that log wait, as they waited on a slow stdout before.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// How long the writer gathers lines after the first before writing them. Each batch wakes the
/// writer once (two context switches): at 5 ms, under load, that was a tenth of a switch per
/// request, about 1 % of an invocation.
pub const GATHER: Duration = Duration::from_millis(20);

/// Lines waiting past this make the writer write at once.
const SOON: usize = 64 * 1024;

/// Lines waiting past this make the threads that log wait for the writer.
const MAX_PENDING: usize = 4 * 1024 * 1024;

#[derive(Default)]
struct State {
    /// Lines not yet handed to the writer.
    pending: Vec<u8>,
    /// Bytes ever appended, and bytes ever written (the writer's progress, for [`Flush`]).
    appended: u64,
    written: u64,
    /// The writer waits for a first line (a line appended now must wake it).
    idle: bool,
    /// Write without gathering (a flush is waited for, or the buffer is large).
    now: bool,
}

struct Shared {
    state: Mutex<State>,
    /// The writer waits on it for lines, or for the end of its gathering.
    lines: Condvar,
    /// Waited on for the writer's progress (by flushes, and by loggers when the buffer is full).
    progress: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A thread that panicked while holding the lock left the buffer whole (appends and swaps
        // cannot panic half-way): go on with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A `MakeWriter` for the log subscriber: each line it is given goes to the batch.
#[derive(Clone)]
pub struct Batched(Arc<Shared>);

/// Writes what is still waiting when dropped, and waits for it (`main` holds one).
#[must_use = "the lines still waiting are written when this is dropped"]
pub struct Flush(Option<Arc<Shared>>);

impl Batched {
    /// Starts the writer thread, writing to `out`.
    pub fn start(out: impl Write + Send + 'static) -> (Batched, Flush) {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            lines: Condvar::new(),
            progress: Condvar::new(),
        });
        let writer = shared.clone();
        std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || write_batches(&writer, out))
            .expect("the log writer thread starts");
        (Batched(shared.clone()), Flush(Some(shared)))
    }

    /// Appends one whole line (an `info` line: written with the next batch).
    pub fn write_line(&self, line: &[u8]) {
        self.append(line, false);
    }

    fn append(&self, bytes: &[u8], wait: bool) {
        let shared = &*self.0;
        let mut state = shared.lock();
        while state.pending.len() >= MAX_PENDING {
            state.now = true;
            shared.lines.notify_one();
            state = shared
                .progress
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
        state.pending.extend_from_slice(bytes);
        state.appended += bytes.len() as u64;
        if wait {
            let target = state.appended;
            drop(state);
            Flush::until(shared, target);
        } else if state.idle {
            state.idle = false;
            shared.lines.notify_one();
        } else if state.pending.len() >= SOON && !state.now {
            state.now = true;
            shared.lines.notify_one();
        }
    }
}

fn write_batches(shared: &Shared, mut out: impl Write) {
    let mut spare = Vec::new();
    let mut state = shared.lock();
    loop {
        while state.pending.is_empty() {
            state.idle = true;
            state = shared.lines.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        state.idle = false;
        if !state.now {
            // Gather what comes in the meantime (a flush or a large buffer ends this early).
            state = shared
                .lines
                .wait_timeout_while(state, GATHER, |s| !s.now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        state.now = false;
        let mut batch = std::mem::replace(&mut state.pending, spare);
        let upto = state.appended;
        drop(state);
        // Nothing to do about a stdout that refuses: the lines are dropped, as a closed stdout
        // drops them.
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        batch.clear();
        // Keep the allocation, unless a burst made it large.
        if batch.capacity() > SOON * 4 {
            batch = Vec::new();
        }
        spare = batch;
        state = shared.lock();
        state.written = upto;
        shared.progress.notify_all();
    }
}

impl Flush {
    /// Waits until every line appended so far is written.
    pub fn flush(&self) {
        let Some(shared) = &self.0 else { return };
        let target = shared.lock().appended;
        Self::until(shared, target);
    }

    /// Waits until the first `target` bytes ever appended are written.
    fn until(shared: &Shared, target: u64) {
        let mut state = shared.lock();
        while state.written < target {
            state.now = true;
            shared.lines.notify_one();
            let (s, timeout) = shared
                .progress
                .wait_timeout(state, Duration::from_secs(5))
                .unwrap_or_else(|e| e.into_inner());
            state = s;
            if timeout.timed_out() {
                // A stdout blocked for good: do not hang the process's exit on it.
                return;
            }
        }
    }

    /// A flush that does nothing (logging went elsewhere).
    pub fn none() -> Flush {
        Flush(None)
    }
}

impl Drop for Flush {
    fn drop(&mut self) {
        self.flush();
    }
}

/// One line, as the subscriber writes it; a warning or an error is written before the thread
/// that logged it goes on (they are few, and the lines an operator needs most after a crash).
pub struct Line<'a> {
    batched: &'a Batched,
    at_once: bool,
}

impl Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.batched.append(buf, self.at_once);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Batched {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line {
            batched: self,
            at_once: false,
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Line<'a> {
        Line {
            batched: self,
            at_once: *meta.level() <= tracing::Level::WARN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Out(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Out {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut o = self.0.lock().unwrap();
            o.0.extend_from_slice(buf);
            o.1 += 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_arrive_in_order_in_few_writes_and_a_flush_waits_for_them() {
        let out = Out::default();
        let (batched, flush) = Batched::start(out.clone());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let b = batched.clone();
                std::thread::spawn(move || {
                    for i in 0..2_000 {
                        let mut w = b.make_writer();
                        w.write_all(format!("thread {t} line {i}\n").as_bytes())
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        flush.flush();
        let (bytes, writes) = out.0.lock().unwrap().clone();
        let text = String::from_utf8(bytes).unwrap();
        assert_eq!(text.lines().count(), 8_000);
        for t in 0..4 {
            let mine: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with(&format!("thread {t} ")))
                .collect();
            let expected: Vec<String> =
                (0..2_000).map(|i| format!("thread {t} line {i}")).collect();
            assert_eq!(mine, expected, "each thread's lines whole and in order");
        }
        assert!(writes < 8_000 / 10, "{writes} writes for 8,000 lines");
    }

    #[test]
    fn a_line_is_written_soon_without_a_flush() {
        let out = Out::default();
        let (batched, _flush) = Batched::start(out.clone());
        batched.make_writer().write_all(b"one\n").unwrap();
        let started = Instant::now();
        while out.0.lock().unwrap().0.is_empty() {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "the line was not written"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(out.0.lock().unwrap().0, b"one\n");
    }

    #[test]
    fn dropping_the_flush_writes_what_waits() {
        let out = Out::default();
        let (batched, flush) = Batched::start(out.clone());
        for i in 0..100 {
            batched
                .make_writer()
                .write_all(format!("{i}\n").as_bytes())
                .unwrap();
        }
        drop(flush);
        assert_eq!(
            String::from_utf8(out.0.lock().unwrap().0.clone())
                .unwrap()
                .lines()
                .count(),
            100
        );
    }

    #[test]
    fn a_warning_or_an_error_is_written_before_the_logger_goes_on() {
        let out = Out::default();
        let (batched, _flush) = Batched::start(out.clone());
        let info = crate::telemetry::test_meta::event(tracing::Level::INFO);
        let warn = crate::telemetry::test_meta::event(tracing::Level::WARN);
        batched.make_writer_for(&info).write_all(b"info\n").unwrap();
        batched.make_writer_for(&warn).write_all(b"warn\n").unwrap();
        // Both, in order, with no wait and no flush.
        assert_eq!(out.0.lock().unwrap().0, b"info\nwarn\n");
    }
}
