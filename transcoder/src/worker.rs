//! A supervised worker thread: a bounded queue in, a state built by a factory, and a fresh state
//! after a panic.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

/// The longest pause between two restarts of a state that keeps failing.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The caller's end of a worker.
#[derive(Debug)]
pub(crate) struct Worker<In> {
    queue: Option<SyncSender<In>>,
    thread: Option<JoinHandle<()>>,
}

/// What became of an item offered to a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offer {
    Queued,
    /// The queue was full (or the worker gone): the item was dropped.
    Dropped,
}

/// What a worker runs: a state made by `start`, fed by `step`; `restarted` is told each time a
/// panic (or a failed start) threw the state away.
pub(crate) struct Task<Start, Step, Restarted> {
    pub start: Start,
    pub step: Step,
    pub restarted: Restarted,
}

impl<In: Send + 'static> Worker<In> {
    /// Spawns the thread `name` with a queue of `capacity` items.
    pub(crate) fn spawn<S, E, Start, Step, Restarted>(
        name: &str,
        capacity: usize,
        task: Task<Start, Step, Restarted>,
    ) -> std::io::Result<Self>
    where
        S: 'static,
        E: std::fmt::Display + 'static,
        Start: FnMut() -> Result<S, E> + Send + 'static,
        Step: FnMut(&mut S, In) + Send + 'static,
        Restarted: FnMut() + Send + 'static,
    {
        let (queue, items) = sync_channel(capacity.max(1));
        let thread = std::thread::Builder::new().name(name.to_owned()).spawn(move || supervise(&items, task))?;
        Ok(Self { queue: Some(queue), thread: Some(thread) })
    }

    /// Offers an item without waiting.
    pub(crate) fn offer(&self, item: In) -> Offer {
        match self.queue.as_ref().map(|queue| queue.try_send(item)) {
            Some(Ok(())) => Offer::Queued,
            Some(Err(TrySendError::Full(_) | TrySendError::Disconnected(_))) | None => Offer::Dropped,
        }
    }

    /// Closes the queue and waits until the worker has finished what was queued.
    pub(crate) fn stop(mut self) {
        self.queue = None;
        if let Some(thread) = self.thread.take() {
            // The worker catches its panics; a join error would mean one escaped the supervisor
            // itself, and there is nothing left to clean up then.
            let _ = thread.join();
        }
    }
}

impl<In> Drop for Worker<In> {
    fn drop(&mut self) {
        // Dropping the sender ends the worker's loop once the queue is drained; the thread is
        // not joined here, so dropping a job never blocks the caller.
        self.queue = None;
    }
}

fn supervise<S, In, E, Start, Step, Restarted>(items: &Receiver<In>, mut task: Task<Start, Step, Restarted>)
where
    E: std::fmt::Display,
    Start: FnMut() -> Result<S, E>,
    Step: FnMut(&mut S, In),
    Restarted: FnMut(),
{
    let mut failures_in_a_row: u32 = 0;
    loop {
        let mut worked = false;
        let run = catch_unwind(AssertUnwindSafe(|| {
            let mut state = match (task.start)() {
                Ok(state) => state,
                Err(error) => {
                    tracing::error!(%error, "transcoder worker could not start");
                    return Err(());
                }
            };
            while let Ok(item) = items.recv() {
                (task.step)(&mut state, item);
                worked = true;
            }
            Ok(())
        }));
        match run {
            Ok(Ok(())) => return,
            Ok(Err(())) => {}
            Err(panic) => tracing::error!(panic = panic_message(&panic), "transcoder worker panicked; restarting it with a fresh state"),
        }
        (task.restarted)();
        failures_in_a_row = if worked { 1 } else { failures_in_a_row.saturating_add(1) };
        // A state that fails at once every time must not spin a core: back off, exponentially.
        if failures_in_a_row > 1 {
            let backoff = Duration::from_millis(50).saturating_mul(1 << failures_in_a_row.min(8)).min(MAX_BACKOFF);
            std::thread::sleep(backoff);
        }
    }
}

fn panic_message(panic: &Box<dyn Any + Send>) -> &str {
    panic.downcast_ref::<&str>().copied().or_else(|| panic.downcast_ref::<String>().map(String::as_str)).unwrap_or("(not a string)")
}
