//! The audit log: one JSON line per decision, written by a background thread from a bounded
//! queue, in one of three modes ([`AuditMode`]):
//!
//! - `best-effort` (the default): a decision never waits; when the queue is full its record is
//!   dropped and counted (`portcullis_audit_dropped_total`).
//! - `no-drop`: a decision waits for room in the queue (at most [`AuditOptions::wait`]); past
//!   that it is withheld (503 `overloaded`), never answered without its record. A crash
//!   (`kill -9`) loses at most the records still queued (`--audit-queue`).
//! - `committed`: a decision is answered only once its record is written and `fsync`ed (one
//!   `fsync` per burst of records, group commit): a crash loses no answered decision's record.
//!
//! On shutdown ([`Audit::finish`]) every queued record is written and synced before the
//! process exits, whatever the mode.

use super::StartError;
use super::metrics::Metrics;
use crate::component::SetupError;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Where audit lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuditTarget {
    /// Standard output.
    Stdout,
    /// Appended to a file.
    File(std::path::PathBuf),
    /// Nowhere (records are not even queued).
    Off,
}

impl std::str::FromStr for AuditTarget {
    type Err = std::convert::Infallible;
    /// `-`: standard output; `off`: nowhere; anything else: a file to append to.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match text {
            "-" => Self::Stdout,
            "off" => Self::Off,
            path => Self::File(path.into()),
        })
    }
}

/// What a decision waits for before it is answered: `best-effort`, `no-drop` or `committed`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuditMode {
    /// Never wait; drop (and count) a record the queue has no room for.
    #[default]
    BestEffort,
    /// Wait for room in the queue; withhold the decision rather than lose its record.
    NoDrop,
    /// Wait until the record is written and synced to disk.
    Committed,
}

impl std::str::FromStr for AuditMode {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "best-effort" => Ok(Self::BestEffort),
            "no-drop" => Ok(Self::NoDrop),
            "committed" => Ok(Self::Committed),
            other => Err(format!(
                "unknown audit mode `{other}`: use best-effort, no-drop or committed"
            )),
        }
    }
}

/// How the audit log is written.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditOptions {
    /// Where.
    pub target: AuditTarget,
    /// Queue length (records).
    pub queue: usize,
    /// What a decision waits for.
    pub mode: AuditMode,
    /// The longest a decision waits for the audit log (`no-drop`, `committed`) before it is
    /// withheld.
    pub wait: Duration,
}

impl Default for AuditOptions {
    fn default() -> Self {
        Self {
            target: AuditTarget::Stdout,
            queue: 65_536,
            mode: AuditMode::BestEffort,
            wait: Duration::from_secs(2),
        }
    }
}

impl AuditOptions {
    /// These options writing to `target`.
    pub fn to(target: AuditTarget) -> Self {
        Self {
            target,
            ..Self::default()
        }
    }
}

/// The audit log could not take a record in time (`no-drop`, `committed`): the decision must
/// not be answered.
#[derive(Debug, thiserror::Error)]
#[error("the audit log did not take the record in time")]
pub struct AuditRefused;

enum Message {
    /// A record.
    Line(String),
    /// A record whose writing and syncing the sender waits for.
    Commit(String, oneshot::Sender<bool>),
    /// Write and sync what came before, then answer.
    Flush(oneshot::Sender<()>),
}

/// The sending side of the audit queue.
#[derive(Clone, Debug)]
pub struct Audit {
    sender: Option<mpsc::Sender<Message>>,
    mode: AuditMode,
    wait: Duration,
    /// Counts records written and dropped: the audit log's; `None` for the access log.
    metrics: Option<Arc<Metrics>>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Line(_) => "Line",
            Self::Commit(..) => "Commit",
            Self::Flush(_) => "Flush",
        })
    }
}

impl Audit {
    /// Start the writer thread; `metrics` (the audit log's) counts records written and dropped.
    ///
    /// # Errors
    /// When the file cannot be opened or the thread cannot start.
    pub fn start(
        options: &AuditOptions,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<Self, StartError> {
        let (out, file): (Box<dyn Write + Send>, Option<std::fs::File>) = match &options.target {
            AuditTarget::Off => {
                return Ok(Self {
                    sender: None,
                    mode: options.mode,
                    wait: options.wait,
                    metrics,
                });
            }
            AuditTarget::Stdout => (Box::new(std::io::stdout()), None),
            AuditTarget::File(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| StartError::AuditLog {
                        path: path.clone(),
                        source,
                    })?;
                let sync = file.try_clone().map_err(|source| StartError::AuditLog {
                    path: path.clone(),
                    source,
                })?;
                (Box::new(file), Some(sync))
            }
        };
        let (sender, receiver) = mpsc::channel(options.queue.max(1));
        let writer_metrics = metrics.clone();
        std::thread::Builder::new()
            .name("portcullis-audit".into())
            .spawn(move || write_lines(receiver, out, file.as_ref(), writer_metrics.as_deref()))
            .map_err(|source| SetupError::Thread {
                what: "audit writer",
                source,
            })?;
        Ok(Self {
            sender: Some(sender),
            mode: options.mode,
            wait: options.wait,
            metrics,
        })
    }

    /// Hand records (JSON objects, one line each) to the log, and wait for what the mode
    /// promises. All are handed over before any is waited for, so that a committed log syncs
    /// a batch together.
    ///
    /// # Errors
    /// `no-drop` and `committed`: the log did not take (or, `committed`, sync) every record
    /// within the wait; the decisions must be withheld.
    pub async fn record_all(&self, lines: Vec<String>) -> Result<(), AuditRefused> {
        let Some(sender) = &self.sender else {
            return Ok(());
        };
        if self.mode == AuditMode::BestEffort {
            for line in lines {
                if sender.try_send(Message::Line(line)).is_err()
                    && let Some(metrics) = &self.metrics
                {
                    metrics.audit(false);
                }
            }
            return Ok(());
        }
        let committed = self.mode == AuditMode::Committed;
        let handed = async {
            let mut written = Vec::new();
            for line in lines {
                let message = if committed {
                    let (done, receiver) = oneshot::channel();
                    written.push(receiver);
                    Message::Commit(line, done)
                } else {
                    Message::Line(line)
                };
                sender.send(message).await.map_err(|_| AuditRefused)?;
            }
            for receiver in written {
                if receiver.await != Ok(true) {
                    return Err(AuditRefused);
                }
            }
            Ok(())
        };
        match tokio::time::timeout(self.wait, handed).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(self.refused()),
        }
    }

    /// Whether records go anywhere.
    pub fn is_on(&self) -> bool {
        self.sender.is_some()
    }

    fn refused(&self) -> AuditRefused {
        if let Some(metrics) = &self.metrics {
            metrics.audit_withheld();
        }
        AuditRefused
    }

    /// Write and sync every record queued so far (at shutdown: nothing queued is lost).
    pub async fn finish(&self) {
        let Some(sender) = &self.sender else { return };
        let (done, flushed) = oneshot::channel();
        if sender.send(Message::Flush(done)).await.is_ok() {
            let _ = flushed.await;
        }
    }
}

fn write_lines(
    mut receiver: mpsc::Receiver<Message>,
    out: Box<dyn Write + Send>,
    file: Option<&std::fs::File>,
    metrics: Option<&Metrics>,
) {
    let mut out = std::io::BufWriter::new(out);
    while let Some(first) = receiver.blocking_recv() {
        // Write what is queued, then flush (and sync, when someone waits for it) once: a burst
        // costs one write and one fsync, a lone record is not held back.
        let mut waiting = Vec::new();
        let mut flushes = Vec::new();
        let mut next = Some(first);
        while let Some(message) = next {
            let line = match message {
                Message::Line(line) => Some(line),
                Message::Commit(line, done) => {
                    waiting.push(done);
                    Some(line)
                }
                Message::Flush(done) => {
                    flushes.push(done);
                    None
                }
            };
            if let Some(line) = line {
                let written = out
                    .write_all(line.as_bytes())
                    .and_then(|()| out.write_all(b"\n"));
                if let Some(metrics) = metrics {
                    metrics.audit(written.is_ok());
                }
            }
            next = receiver.try_recv().ok();
        }
        let mut ok = out.flush().is_ok();
        if !waiting.is_empty() || !flushes.is_empty() {
            // Standard output (a pipe, a terminal) cannot be synced: flushed is all there is.
            ok &= file.is_none_or(|f| f.sync_data().is_ok());
        }
        if !ok {
            crate::log::error("audit log write failed");
        }
        for done in waiting {
            let _ = done.send(ok);
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn lines(path: &std::path::Path) -> u64 {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .count() as u64
    }

    #[test]
    fn best_effort_drops_and_counts_what_the_queue_cannot_hold() {
        let path = std::env::temp_dir().join(format!(
            "portcullis-audit-best-effort-{}.log",
            std::process::id()
        ));
        std::fs::remove_file(&path).ok();
        let metrics = Arc::new(Metrics::default());
        let options = AuditOptions {
            queue: 4,
            ..AuditOptions::to(AuditTarget::File(path.clone()))
        };
        let audit = Audit::start(&options, Some(Arc::clone(&metrics))).unwrap();
        runtime().block_on(async {
            for i in 0..10_000 {
                audit
                    .record_all(vec![format!("{{\"n\":{i}}}")])
                    .await
                    .unwrap();
            }
            audit.finish().await;
        });
        // After `finish`, everything that was queued is in the file.
        assert_eq!(lines(&path) + metrics.audit_dropped(), 10_000);
        assert!(lines(&path) >= 1);
        std::fs::remove_file(&path).ok();
    }

    #[test]
    fn no_drop_and_committed_lose_nothing() {
        for mode in [AuditMode::NoDrop, AuditMode::Committed] {
            let path = std::env::temp_dir().join(format!(
                "portcullis-audit-{mode:?}-{}.log",
                std::process::id()
            ));
            std::fs::remove_file(&path).ok();
            let metrics = Arc::new(Metrics::default());
            let options = AuditOptions {
                queue: 4,
                mode,
                ..AuditOptions::to(AuditTarget::File(path.clone()))
            };
            let audit = Audit::start(&options, Some(Arc::clone(&metrics))).unwrap();
            runtime().block_on(async {
                let mut tasks = Vec::new();
                for i in 0..2_000 {
                    let audit = audit.clone();
                    tasks.push(tokio::spawn(async move {
                        audit.record_all(vec![format!("{{\"n\":{i}}}")]).await
                    }));
                }
                for task in tasks {
                    task.await.unwrap().unwrap();
                }
                if mode == AuditMode::Committed {
                    // Answered means written: nothing to flush.
                    assert_eq!(lines(&path), 2_000, "{mode:?}");
                }
                audit.finish().await;
            });
            assert_eq!(lines(&path), 2_000, "{mode:?}");
            assert_eq!(metrics.audit_dropped(), 0);
            std::fs::remove_file(&path).ok();
        }
    }

    #[test]
    fn a_log_that_cannot_keep_up_withholds_the_decision() {
        // A writer stuck behind a full pipe: nobody reads the other end.
        let (reader, writer) = std::io::pipe().unwrap();
        let metrics = Arc::new(Metrics::default());
        let (sender, receiver) = mpsc::channel(2);
        let writer_metrics = Arc::clone(&metrics);
        std::thread::spawn(move || {
            write_lines(receiver, Box::new(writer), None, Some(&writer_metrics));
        });
        let audit = Audit {
            sender: Some(sender),
            mode: AuditMode::NoDrop,
            wait: Duration::from_millis(200),
            metrics: Some(Arc::clone(&metrics)),
        };
        let big = "x".repeat(1 << 20);
        let started = Instant::now();
        let refused = runtime().block_on(async {
            for _ in 0..64 {
                if audit.record_all(vec![big.clone()]).await.is_err() {
                    return true;
                }
            }
            false
        });
        assert!(refused, "a stuck log must refuse");
        assert!(started.elapsed() < Duration::from_secs(20));
        assert!(metrics.audit_withheld_count() >= 1);
        drop(reader);
    }
}
