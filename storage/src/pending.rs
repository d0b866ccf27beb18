//! A one-shot completion handle built on `std` only.
//!
//! Every write returns a [`Pending`]. The writer thread completes it after the transaction
//! holding the write has committed (or failed), and the caller consumes it in whichever
//! style suits it: block with [`Pending::wait`], `.await` it (it is a [`Future`], so tokio
//! glue needs no bridge), or hand over a callback with [`Pending::on_complete`]. This crate
//! stays free of any async runtime.

use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use crate::StorageError;

type Callback<T> = Box<dyn FnOnce(Result<T, StorageError>) + Send>;

enum State<T> {
    /// Not completed yet; a task that polled the future left its waker here.
    Waiting(Option<Waker>),
    /// Not completed yet; the callback runs when it is.
    Callback(Callback<T>),
    /// Completed, result not taken yet.
    Done(Result<T, StorageError>),
    /// The result went to its consumer.
    Taken,
}

struct Slot<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

impl<T> Slot<T> {
    /// The state, even if a thread panicked while holding the lock: every transition below
    /// leaves the state consistent, so a poisoned lock holds nothing half-written.
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The outcome of a write (or flush) that the writer thread has not necessarily finished.
///
/// `Ok` means the write is committed to disk (WAL with `synchronous=FULL`); `Err` means it is
/// not stored. Dropping a `Pending` (`drop(pending)`) does not cancel the write, it only
/// discards its outcome.
#[must_use = "a write's outcome tells whether it is on disk; dropping it does not cancel the write"]
pub struct Pending<T> {
    slot: Arc<Slot<T>>,
}

/// The writer's side of a [`Pending`].
///
/// Dropped without [`Completer::complete`] (the writer thread stopped or panicked, or the
/// command never reached it), it completes the `Pending` with [`StorageError::WriterGone`], so
/// a caller never waits forever and never mistakes a lost write for a stored one.
pub(crate) struct Completer<T> {
    slot: Option<Arc<Slot<T>>>,
}

/// A connected [`Pending`] and [`Completer`].
pub(crate) fn pending<T>() -> (Pending<T>, Completer<T>) {
    let slot = Arc::new(Slot {
        state: Mutex::new(State::Waiting(None)),
        ready: Condvar::new(),
    });
    (
        Pending {
            slot: Arc::clone(&slot),
        },
        Completer { slot: Some(slot) },
    )
}

impl<T> Completer<T> {
    /// Delivers the outcome; runs the callback (if one was given) on this thread.
    pub(crate) fn complete(mut self, result: Result<T, StorageError>) {
        if let Some(slot) = self.slot.take() {
            deliver(&slot, result);
        }
    }
}

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            deliver(&slot, Err(StorageError::WriterGone));
        }
    }
}

fn deliver<T>(slot: &Slot<T>, result: Result<T, StorageError>) {
    let mut state = slot.lock();
    match std::mem::replace(&mut *state, State::Taken) {
        State::Waiting(waker) => {
            *state = State::Done(result);
            drop(state);
            slot.ready.notify_all();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
        State::Callback(callback) => {
            drop(state);
            run_callback(callback, result);
        }
        // A completer delivers once; these states cannot be reached before it does.
        done @ (State::Done(_) | State::Taken) => *state = done,
    }
}

/// Runs a caller's callback; a panic in it must not take down the writer thread, which would
/// fail every later write. The panic hook has already reported it.
fn run_callback<T>(callback: Callback<T>, result: Result<T, StorageError>) {
    let _ = catch_unwind(AssertUnwindSafe(move || callback(result)));
}

impl<T> Pending<T> {
    /// Blocks the current thread until the outcome is known.
    ///
    /// Do not call this from an async task: `.await` the `Pending` instead.
    pub fn wait(self) -> Result<T, StorageError> {
        let mut state = self.slot.lock();
        loop {
            match std::mem::replace(&mut *state, State::Taken) {
                State::Done(result) => return result,
                waiting @ State::Waiting(_) => {
                    *state = waiting;
                    state = self
                        .slot
                        .ready
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                // `wait` and `on_complete` consume the handle and `poll` never leaves these
                // states behind for a live handle, so only a completer bug gets here.
                State::Callback(_) | State::Taken => return Err(StorageError::WriterGone),
            }
        }
    }

    /// Runs `callback` with the outcome: on the writer thread right after the commit, or on
    /// this thread at once if the outcome is already known.
    ///
    /// The writer runs callbacks between transactions, so keep them short (send on a channel,
    /// wake a task); a callback that panics is contained.
    pub fn on_complete<F>(self, callback: F)
    where
        F: FnOnce(Result<T, StorageError>) + Send + 'static,
    {
        let mut state = self.slot.lock();
        match std::mem::replace(&mut *state, State::Taken) {
            State::Done(result) => {
                drop(state);
                run_callback(Box::new(callback), result);
            }
            State::Waiting(_) => *state = State::Callback(Box::new(callback)),
            State::Callback(_) | State::Taken => {
                drop(state);
                run_callback(Box::new(callback), Err(StorageError::WriterGone));
            }
        }
    }

    /// This write's outcome, delivered only once `later` (a write issued after it) is done
    /// too: for a caller whose write counts only with a second one, e.g. a record and the
    /// stamp that tells other processes it changed. An error of either is the outcome.
    pub fn with_later(self, later: Pending<()>) -> Pending<T>
    where
        T: Send + 'static,
    {
        let (both, completer) = pending();
        self.on_complete(move |first| {
            later.on_complete(move |second| {
                completer.complete(first.and_then(|value| second.map(|()| value)));
            });
        });
        both
    }

    /// Whether the outcome is known (a later `wait` will not block).
    pub fn is_complete(&self) -> bool {
        matches!(*self.slot.lock(), State::Done(_))
    }
}

impl<T> Future for Pending<T> {
    type Output = Result<T, StorageError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.slot.lock();
        match std::mem::replace(&mut *state, State::Taken) {
            State::Done(result) => Poll::Ready(result),
            State::Waiting(_) => {
                *state = State::Waiting(Some(cx.waker().clone()));
                Poll::Pending
            }
            State::Callback(_) => unreachable!("a Pending with a callback has been consumed"),
            State::Taken => panic!("Pending polled after it completed"),
        }
    }
}

impl<T> fmt::Debug for Pending<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pending")
            .field("complete", &self.is_complete())
            .finish()
    }
}

impl<T> fmt::Debug for Completer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Completer").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::task::Wake;
    use std::thread;

    use super::*;

    /// Drives a future to completion on this thread, parking between polls.
    fn block_on<F: Future>(future: F) -> F::Output {
        struct Unpark(thread::Thread);
        impl Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(Arc::new(Unpark(thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut future = std::pin::pin!(future);
        loop {
            match future.as_mut().poll(&mut cx) {
                Poll::Ready(output) => return output,
                Poll::Pending => thread::park(),
            }
        }
    }

    #[test]
    fn with_later_completes_only_when_the_later_write_does_and_carries_either_error() {
        let (first, first_done) = pending::<u32>();
        let (later, later_done) = pending::<()>();
        let both = first.with_later(later);
        first_done.complete(Ok(7));
        assert!(!both.is_complete(), "the later write is still in flight");
        later_done.complete(Ok(()));
        assert_eq!(both.wait().ok(), Some(7));

        let (first, first_done) = pending::<u32>();
        let (later, later_done) = pending::<()>();
        let both = first.with_later(later);
        first_done.complete(Ok(7));
        drop(later_done);
        assert!(matches!(both.wait(), Err(StorageError::WriterGone)));
    }

    #[test]
    fn wait_returns_the_value_completed_on_another_thread() -> anyhow::Result<()> {
        let (pending, completer) = pending::<u32>();
        let writer = thread::spawn(move || completer.complete(Ok(7)));
        assert_eq!(pending.wait()?, 7);
        writer
            .join()
            .map_err(|_| anyhow::anyhow!("completer thread panicked"))?;
        Ok(())
    }

    #[test]
    fn a_dropped_completer_reports_writer_gone_not_success() {
        let (pending, completer) = pending::<()>();
        drop(completer);
        assert!(matches!(pending.wait(), Err(StorageError::WriterGone)));
    }

    #[test]
    fn await_resolves_when_completed_later() -> anyhow::Result<()> {
        let (pending, completer) = pending::<&'static str>();
        let writer = thread::spawn(move || {
            thread::sleep(std::time::Duration::from_millis(20));
            completer.complete(Ok("committed"));
        });
        assert_eq!(block_on(pending)?, "committed");
        writer
            .join()
            .map_err(|_| anyhow::anyhow!("completer thread panicked"))?;
        Ok(())
    }

    #[test]
    fn callback_runs_whether_registered_before_or_after_completion() -> anyhow::Result<()> {
        let (tx, rx) = mpsc::channel();

        let (before, completer) = pending::<u8>();
        let sender = tx.clone();
        before.on_complete(move |r| {
            let _ = sender.send(r.ok());
        });
        completer.complete(Ok(1));

        let (after, completer) = pending::<u8>();
        completer.complete(Ok(2));
        after.on_complete(move |r| {
            let _ = tx.send(r.ok());
        });

        assert_eq!(rx.recv()?, Some(1));
        assert_eq!(rx.recv()?, Some(2));
        Ok(())
    }

    #[test]
    fn a_panicking_callback_does_not_unwind_into_the_completer() {
        let (pending, completer) = pending::<()>();
        pending.on_complete(|_| panic!("callback bug"));
        // Reaching the next line is the assertion: the panic stayed inside the callback.
        completer.complete(Ok(()));
    }
}
