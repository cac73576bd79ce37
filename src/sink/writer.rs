//! The writer thread: owns the PostgreSQL connection and writes batches in order, one
//! at a time, so that the timely worker that gathers them is never blocked on I/O
//! unless it asks to wait.

use std::sync::mpsc::{channel, Receiver, Sender, TryRecvError};
use std::thread::JoinHandle;

use anyhow::{anyhow, Result};

use super::batch::Batch;
use super::postgres::{PgSink, ProgressRow};

pub struct Writer {
    jobs: Option<Sender<(Batch, Option<ProgressRow>)>>,
    written: Receiver<()>,
    in_flight: usize,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Writer {
    pub fn spawn(mut sink: PgSink) -> Writer {
        let (jobs, queue) = channel::<(Batch, Option<ProgressRow>)>();
        let (done, written) = channel();
        let thread = std::thread::Builder::new()
            .name("postgres-writer".into())
            .spawn(move || -> Result<()> {
                for (batch, progress) in queue {
                    sink.write(&batch, progress.as_ref())?;
                    let _ = done.send(());
                }
                Ok(())
            })
            .expect("spawn the writer thread");
        Writer { jobs: Some(jobs), written, in_flight: 0, thread: Some(thread) }
    }

    /// Whether a batch is still being written.
    pub fn busy(&mut self) -> Result<bool> {
        loop {
            match self.written.try_recv() {
                Ok(()) => self.in_flight -= 1,
                Err(TryRecvError::Empty) => return Ok(self.in_flight > 0),
                Err(TryRecvError::Disconnected) => return self.stopped().map(|_| false),
            }
        }
    }

    pub fn wait_idle(&mut self) -> Result<()> {
        while self.in_flight > 0 {
            match self.written.recv() {
                Ok(()) => self.in_flight -= 1,
                Err(_) => return self.stopped(),
            }
        }
        Ok(())
    }

    pub fn send(&mut self, batch: Batch, progress: Option<ProgressRow>) -> Result<()> {
        let jobs = self.jobs.as_ref().expect("writer is open");
        if jobs.send((batch, progress)).is_err() {
            return self.stopped();
        }
        self.in_flight += 1;
        Ok(())
    }

    /// The writer ended early: only an error ends it, and it says why.
    fn stopped(&mut self) -> Result<()> {
        self.finish()?;
        Err(anyhow!("the PostgreSQL writer stopped"))
    }

    /// Waits for every batch to be written.
    pub fn finish(&mut self) -> Result<()> {
        self.jobs.take();
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| anyhow!("the PostgreSQL writer panicked"))?,
            None => Ok(()),
        }
    }
}
