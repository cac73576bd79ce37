//! Stopping on SIGTERM and SIGINT: a flag the long-running loops poll.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{Context, Result};

/// A flag set when SIGTERM or SIGINT arrives.
pub fn stop_flag() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, flag.clone()).context("cannot install a signal handler")?;
    }
    Ok(flag)
}
