//! Stopping on SIGTERM and SIGINT: a flag the long-running loops poll.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{Context, Result};

/// A flag set when SIGTERM or SIGINT arrives; a second one exits at once (status 1),
/// for a process stuck where no loop polls the flag (waiting for a peer, a hung service).
pub fn stop_flag() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        // Registered first, so it sees the flag as the earlier signal left it.
        signal_hook::flag::register_conditional_shutdown(signal, 1, flag.clone()).context("cannot install a signal handler")?;
        signal_hook::flag::register(signal, flag.clone()).context("cannot install a signal handler")?;
    }
    Ok(flag)
}
