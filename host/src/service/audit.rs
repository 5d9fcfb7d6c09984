//! The audit log: one JSON line per decision, written by a background thread. Decisions hand
//! their record to a bounded queue and never wait: when it is full the record is dropped and
//! counted (`portcullis_audit_dropped_total`).

use super::StartError;
use super::metrics::Metrics;
use crate::component::SetupError;
use std::io::Write;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

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

/// The sending side of the audit queue.
#[derive(Clone, Debug)]
pub struct Audit {
    sender: Option<SyncSender<String>>,
    metrics: Arc<Metrics>,
}

impl Audit {
    /// Start the writer thread for `target`, with a queue of `capacity` records.
    ///
    /// # Errors
    /// When the audit file cannot be opened or the thread cannot start.
    pub fn start(
        target: &AuditTarget,
        capacity: usize,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StartError> {
        let out: Box<dyn Write + Send> = match target {
            AuditTarget::Off => {
                return Ok(Self {
                    sender: None,
                    metrics,
                });
            }
            AuditTarget::Stdout => Box::new(std::io::stdout()),
            AuditTarget::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| StartError::AuditLog {
                        path: path.clone(),
                        source,
                    })?,
            ),
        };
        let (sender, receiver) = sync_channel(capacity);
        let writer_metrics = Arc::clone(&metrics);
        std::thread::Builder::new()
            .name("portcullis-audit".into())
            .spawn(move || write_lines(&receiver, out, &writer_metrics))
            .map_err(|source| SetupError::Thread {
                what: "audit writer",
                source,
            })?;
        Ok(Self {
            sender: Some(sender),
            metrics,
        })
    }

    /// Queue one record (a JSON object, one line); never blocks.
    pub fn record(&self, line: String) {
        let Some(sender) = &self.sender else { return };
        match sender.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.metrics.audit(false),
        }
    }
}

fn write_lines(receiver: &Receiver<String>, out: Box<dyn Write + Send>, metrics: &Metrics) {
    let mut out = std::io::BufWriter::new(out);
    while let Ok(first) = receiver.recv() {
        let mut line = Some(first);
        // Write what is queued, then flush once: a burst costs one write, a lone record is not
        // held back.
        while let Some(record) = line {
            let written = out
                .write_all(record.as_bytes())
                .and_then(|()| out.write_all(b"\n"));
            metrics.audit(written.is_ok());
            line = receiver.try_recv().ok();
        }
        if let Err(e) = out.flush() {
            eprintln!("portcullis: audit log write failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn records_reach_the_file_and_overflow_is_counted() {
        let path =
            std::env::temp_dir().join(format!("portcullis-audit-{}.log", std::process::id()));
        std::fs::remove_file(&path).ok();
        let metrics = Arc::new(Metrics::default());
        let audit =
            Audit::start(&AuditTarget::File(path.clone()), 4, Arc::clone(&metrics)).unwrap();
        for i in 0..10_000 {
            audit.record(format!("{{\"n\":{i}}}"));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let lines = std::fs::read_to_string(&path)
                .unwrap_or_default()
                .lines()
                .count() as u64;
            if lines + metrics.audit_dropped() == 10_000 {
                assert!(lines >= 1);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "lines {lines}, dropped {}",
                metrics.audit_dropped()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::fs::remove_file(&path).ok();
    }
}
