//! A fixed set of named threads that take jobs from one channel: the software host's
//! workers for slow calls, and the threads that hash ahead of `SNP_LAUNCH_UPDATE`.

#![forbid(unsafe_code)]

use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

/// Threads `{name}-0`, `{name}-1`, … each running the same function on the jobs it takes.
/// Dropping the set closes the channel and joins the threads (except the dropping thread
/// itself, when one of them drops it: that thread ends on its own).
pub(crate) struct Workers<J> {
    tx: Option<Sender<J>>,
    threads: Vec<JoinHandle<()>>,
}

impl<J: Send + 'static> Workers<J> {
    /// Starts `n` threads that run `work` on each job they take. `None` if no thread could
    /// be started.
    pub(crate) fn start(
        name: &str,
        n: usize,
        work: impl Fn(J) + Send + Sync + 'static,
    ) -> Option<Self> {
        let (tx, rx) = mpsc::channel::<J>();
        let rx = Arc::new(Mutex::new(rx));
        let work = Arc::new(work);
        let threads: Vec<JoinHandle<()>> = (0..n)
            .filter_map(|i| {
                let (rx, work) = (rx.clone(), work.clone());
                std::thread::Builder::new()
                    .name(format!("{name}-{i}"))
                    .spawn(move || {
                        loop {
                            let job = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
                            let Ok(job) = job else { break };
                            work(job);
                        }
                    })
                    .ok()
            })
            .collect();
        (!threads.is_empty()).then_some(Self {
            tx: Some(tx),
            threads,
        })
    }

    /// Hands `job` to the next free thread.
    pub(crate) fn send(&self, job: J) {
        if let Some(tx) = &self.tx {
            // The receiving end lives as long as the threads, which outlive `self.tx`.
            let _ = tx.send(job);
        }
    }
}

impl<J> Drop for Workers<J> {
    fn drop(&mut self) {
        drop(self.tx.take());
        let me = std::thread::current().id();
        for t in self.threads.drain(..) {
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Workers;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_job_runs_once_and_drop_joins_the_threads() {
        let done = Arc::new(AtomicUsize::new(0));
        let d = done.clone();
        let w = Workers::start("test-workers", 3, move |n: usize| {
            d.fetch_add(n, Ordering::Relaxed);
        })
        .expect("threads");
        for n in 1..=100 {
            w.send(n);
        }
        drop(w);
        // Joined: every job sent before the drop has run.
        assert_eq!(done.load(Ordering::Relaxed), 5050);
    }
}
