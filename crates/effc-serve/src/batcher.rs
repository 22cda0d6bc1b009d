//! Dynamic batching with Triton's semantics, one batcher per model: requests
//! wait in a bounded queue (a full queue refuses at once); a batch takes the
//! oldest request and whatever else is queued, waiting at most
//! `max_queue_delay` from the oldest request's arrival for more rows, up to
//! `max_batch` rows. One thread per model runs the batches: while one executes,
//! the next forms in the queue (requests keep arriving, their images decoded in
//! parallel by the protocol handlers), and it is taken as soon as the device is
//! free. A request whose rows would overflow the batch starts the next one; a
//! request older than `queue_timeout` when it is reached is answered with a
//! timeout; one whose client is gone is dropped unrun.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::metrics::Metrics;
use crate::model::{Backend, Served};
use crate::ApiError;

/// How batches are formed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchConfig {
    /// Rows per batch at most (1: no batching).
    pub max_batch: usize,
    /// How long the oldest queued request may wait for more rows.
    pub max_queue_delay: Duration,
    /// Requests waiting per model at most; beyond it a request is refused at once.
    pub queue_size: usize,
    /// A request still queued after this long is answered with a timeout.
    pub queue_timeout: Duration,
}

/// A request's rows: per raw output, its rows' values.
pub type Rows = Vec<Vec<f32>>;

/// One request in a queue.
pub struct Job {
    pub rows: usize,
    pub input: Vec<f32>,
    pub enqueued: Instant,
    pub reply: oneshot::Sender<Result<Rows, ApiError>>,
}

/// The sending side of a model's queue.
#[derive(Clone)]
pub struct Queue {
    tx: SyncSender<Job>,
    depth: Arc<AtomicUsize>,
    name: String,
    capacity: usize,
}

impl Queue {
    /// Queues `job`, or refuses it at once when the queue is full.
    pub fn submit(&self, job: Job) -> Result<(), ApiError> {
        self.depth.fetch_add(1, Ordering::SeqCst);
        match self.tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.depth.fetch_sub(1, Ordering::SeqCst);
                Err(match e {
                    TrySendError::Full(_) => ApiError::exhausted(format!(
                        "the queue of model `{}` is full ({} requests waiting); retry later",
                        self.name, self.capacity
                    )),
                    TrySendError::Disconnected(_) => {
                        ApiError::unavailable("the server is shutting down")
                    }
                })
            }
        }
    }

    /// Requests waiting now.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::SeqCst)
    }
}

/// Starts the batcher thread of `served` (it owns `backend`). The thread ends
/// when every [`Queue`] clone is dropped and the queue is empty: queued requests
/// are still answered (a drain).
pub fn start(
    served: Arc<Served>,
    backend: Backend,
    config: BatchConfig,
    metrics: Arc<Metrics>,
) -> (Queue, std::thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::sync_channel::<Job>(config.queue_size);
    let depth = Arc::new(AtomicUsize::new(0));
    let queue = Queue {
        tx,
        depth: Arc::clone(&depth),
        name: served.name.clone(),
        capacity: config.queue_size,
    };
    let thread = std::thread::Builder::new()
        .name(format!("batcher {}", served.name))
        .spawn(move || {
            let take = |job: Job| -> Option<Job> {
                depth.fetch_sub(1, Ordering::SeqCst);
                usable(job, &served.name, config.queue_timeout, &metrics)
            };
            let mut pending: Option<Job> = None;
            loop {
                let first = match pending.take() {
                    Some(j) => j,
                    None => match rx.recv() {
                        Ok(j) => match take(j) {
                            Some(j) => j,
                            None => continue,
                        },
                        Err(_) => break,
                    },
                };
                let deadline = first.enqueued + config.max_queue_delay;
                let mut rows = first.rows;
                let mut batch = vec![first];
                while rows < config.max_batch {
                    let next = match rx.try_recv() {
                        Ok(j) => j,
                        Err(TryRecvError::Disconnected) => break,
                        Err(TryRecvError::Empty) => {
                            let now = Instant::now();
                            if now >= deadline {
                                break;
                            }
                            match rx.recv_timeout(deadline - now) {
                                Ok(j) => j,
                                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                                    break
                                }
                            }
                        }
                    };
                    let Some(next) = take(next) else { continue };
                    if rows + next.rows > config.max_batch {
                        pending = Some(next);
                        break;
                    }
                    rows += next.rows;
                    batch.push(next);
                }
                run(&served, &backend, batch, rows, &metrics);
            }
        })
        .expect("cannot start a batcher thread");
    (queue, thread)
}

/// `job`, unless it waited too long (answered with a timeout) or its client is
/// gone.
fn usable(job: Job, name: &str, timeout: Duration, metrics: &Metrics) -> Option<Job> {
    if job.reply.is_closed() {
        metrics.dropped(name);
        return None;
    }
    let waited = job.enqueued.elapsed();
    if waited > timeout {
        metrics.failure(name, "queue_timeout");
        let _ = job.reply.send(Err(ApiError::unavailable(format!(
            "the request waited {} ms in the queue of model `{name}`, longer than --queue-timeout ({} ms)",
            waited.as_millis(),
            timeout.as_millis()
        ))));
        return None;
    }
    Some(job)
}

/// Runs one batch and gives each request its rows.
fn run(served: &Served, backend: &Backend, batch: Vec<Job>, rows: usize, metrics: &Metrics) {
    let per_image = served.per_image();
    let started = Instant::now();
    for job in &batch {
        metrics.queued(&served.name, started - job.enqueued);
    }
    let mut input = Vec::with_capacity(rows * per_image);
    for job in &batch {
        input.extend_from_slice(&job.input);
    }
    let result = backend.forward(served, &input, rows);
    drop(input);
    metrics.batch(&served.name, rows, started.elapsed());
    let lens = served.raw_lens();
    match result {
        Ok(outputs) => {
            let mut at = 0;
            for job in batch {
                let mine: Rows = outputs
                    .iter()
                    .zip(&lens)
                    .map(|(o, len)| o[at * len..(at + job.rows) * len].to_vec())
                    .collect();
                at += job.rows;
                let result = if mine.iter().flatten().all(|v| v.is_finite()) {
                    Ok(mine)
                } else {
                    Err(ApiError::internal(format!(
                        "model `{}` gave NaN or infinite outputs for this input: the weights or the input overflow",
                        served.name
                    )))
                };
                let _ = job.reply.send(result);
            }
        }
        Err(e) => {
            for job in batch {
                let _ = job.reply.send(Err(ApiError::internal(format!(
                    "model `{}` failed: {e}",
                    served.name
                ))));
            }
        }
    }
}
