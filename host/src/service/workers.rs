//! Decisions run here, on a few dedicated threads, never on the async workers that accept
//! connections, read bodies and answer health probes.
//!
//! Two bounded queues feed the threads: interactive work (one decision, one AuthZEN
//! evaluation, one ext_authz check) and bulk work (batches, cut into chunks of a few items).
//! A thread always takes interactive work first, so a single decision waits for at most one
//! chunk of a batch, however many batches are queued. A full queue is not waited on: the
//! request is answered 503 with `Retry-After` at once (backpressure), and probes never queue
//! at all.

use crate::component::SetupError;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use tokio::sync::oneshot;

/// How much work may wait, and how many threads do it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkerLimits {
    /// Threads deciding (default: the machine's cores).
    pub threads: usize,
    /// Interactive jobs that may wait.
    pub interactive_queue: usize,
    /// Bulk jobs (batch chunks) that may wait.
    pub bulk_queue: usize,
}

impl Default for WorkerLimits {
    fn default() -> Self {
        Self {
            threads: std::thread::available_parallelism().map_or(2, usize::from),
            interactive_queue: 1024,
            bulk_queue: 1024,
        }
    }
}

/// Which queue a job goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// One decision a caller is waiting for.
    Interactive,
    /// A chunk of a batch.
    Bulk,
}

type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Queues {
    interactive: VecDeque<Job>,
    bulk: VecDeque<Job>,
    stopping: bool,
}

struct Inner {
    queues: Mutex<Queues>,
    ready: Condvar,
    limits: WorkerLimits,
}

/// The queues are full: answer 503 and let the client retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Busy;

/// The decision threads. Dropping the last handle stops them once their queues are empty.
#[derive(Clone)]
pub struct Workers {
    inner: Arc<Inner>,
    _stop: Arc<StopOnDrop>,
}

/// Shared by every handle (not by the threads): the last handle to go stops the threads.
struct StopOnDrop(Arc<Inner>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0
            .queues
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stopping = true;
        self.0.ready.notify_all();
    }
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers")
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

impl Workers {
    /// Start the threads.
    ///
    /// # Errors
    /// A thread cannot be started.
    pub fn start(limits: WorkerLimits) -> Result<Self, SetupError> {
        let inner = Arc::new(Inner {
            queues: Mutex::new(Queues::default()),
            ready: Condvar::new(),
            limits: WorkerLimits {
                threads: limits.threads.max(1),
                ..limits
            },
        });
        for n in 0..inner.limits.threads {
            let inner = Arc::clone(&inner);
            std::thread::Builder::new()
                .name(format!("portcullis-decide-{n}"))
                .spawn(move || work(&inner))
                .map_err(|source| SetupError::Thread {
                    what: "decision threads",
                    source,
                })?;
        }
        Ok(Self {
            _stop: Arc::new(StopOnDrop(Arc::clone(&inner))),
            inner,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queues> {
        self.inner
            .queues
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Run `job` on a decision thread; its result arrives on the returned channel.
    ///
    /// # Errors
    /// [`Busy`] when the job's queue is full.
    pub fn submit<R: Send + 'static>(
        &self,
        priority: Priority,
        job: impl FnOnce() -> R + Send + 'static,
    ) -> Result<oneshot::Receiver<R>, Busy> {
        let mut receivers = self.submit_all(priority, vec![job])?;
        receivers.pop().ok_or(Busy)
    }

    /// Queue every job, or none of them when they do not all fit (a batch is answered whole
    /// or refused whole).
    ///
    /// # Errors
    /// [`Busy`] when the queue cannot take them all.
    pub fn submit_all<R: Send + 'static, F: FnOnce() -> R + Send + 'static>(
        &self,
        priority: Priority,
        jobs: Vec<F>,
    ) -> Result<Vec<oneshot::Receiver<R>>, Busy> {
        let mut queues = self.lock();
        let (queue, limit) = match priority {
            Priority::Interactive => (&mut queues.interactive, self.inner.limits.interactive_queue),
            Priority::Bulk => (&mut queues.bulk, self.inner.limits.bulk_queue),
        };
        if queue.len().saturating_add(jobs.len()) > limit {
            return Err(Busy);
        }
        let mut receivers = Vec::with_capacity(jobs.len());
        for job in jobs {
            let (send, receive) = oneshot::channel();
            queue.push_back(Box::new(move || {
                // The caller may have gone (its connection closed): the result is dropped.
                let _ = send.send(job());
            }));
            receivers.push(receive);
        }
        drop(queues);
        self.inner.ready.notify_all();
        Ok(receivers)
    }

    /// Jobs waiting: (interactive, bulk).
    pub fn queued(&self) -> (usize, usize) {
        let queues = self.lock();
        (queues.interactive.len(), queues.bulk.len())
    }
}

fn work(inner: &Inner) {
    loop {
        let job = {
            let mut queues = inner.queues.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                if let Some(job) = queues.interactive.pop_front() {
                    break job;
                }
                if let Some(job) = queues.bulk.pop_front() {
                    break job;
                }
                if queues.stopping {
                    return;
                }
                queues = inner
                    .ready
                    .wait(queues)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        job();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn interactive_work_overtakes_queued_bulk_work() {
        let workers = Workers::start(WorkerLimits {
            threads: 1,
            interactive_queue: 4,
            bulk_queue: 100,
        })
        .unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        // Hold the one thread while the queues fill.
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let blocker = workers
            .submit(Priority::Bulk, move || {
                let _ = hold.recv();
            })
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let bulk: Vec<_> = (0..10)
            .map(|i| {
                let order = Arc::clone(&order);
                move || order.lock().unwrap().push(format!("bulk{i}"))
            })
            .collect();
        let bulk = workers.submit_all(Priority::Bulk, bulk).unwrap();
        let first = {
            let order = Arc::clone(&order);
            workers
                .submit(Priority::Interactive, move || {
                    order.lock().unwrap().push("interactive".into())
                })
                .unwrap()
        };
        release.send(()).unwrap();
        let rt = runtime();
        rt.block_on(async {
            blocker.await.unwrap();
            first.await.unwrap();
            for b in bulk {
                b.await.unwrap();
            }
        });
        let order = order.lock().unwrap();
        assert_eq!(order[0], "interactive", "{order:?}");
        assert_eq!(order.len(), 11);
    }

    #[test]
    fn full_queues_refuse_at_once_and_batches_are_all_or_nothing() {
        let workers = Workers::start(WorkerLimits {
            threads: 1,
            interactive_queue: 2,
            bulk_queue: 3,
        })
        .unwrap();
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let blocker = workers
            .submit(Priority::Interactive, move || {
                let _ = hold.recv();
            })
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let ran = Arc::new(AtomicUsize::new(0));
        let job = || {
            let ran = Arc::clone(&ran);
            move || {
                ran.fetch_add(1, Ordering::SeqCst);
            }
        };
        let a = workers.submit(Priority::Interactive, job()).unwrap();
        let b = workers.submit(Priority::Interactive, job()).unwrap();
        assert_eq!(
            workers.submit(Priority::Interactive, job()).err(),
            Some(Busy)
        );
        assert!(
            workers
                .submit_all(Priority::Bulk, vec![job(), job(), job(), job()])
                .is_err(),
            "four chunks do not fit in three places: none is queued"
        );
        assert_eq!(workers.queued(), (2, 0));
        let c = workers
            .submit_all(Priority::Bulk, vec![job(), job(), job()])
            .unwrap();
        release.send(()).unwrap();
        runtime().block_on(async {
            blocker.await.unwrap();
            a.await.unwrap();
            b.await.unwrap();
            for r in c {
                r.await.unwrap();
            }
        });
        assert_eq!(ran.load(Ordering::SeqCst), 5);
    }
}
