//! The file source: JSON Lines from a file or stdin, read on its own thread and handed
//! over in batches of lines with their line numbers.
//!
//! Owns reading and line splitting only. A line longer than the message limit is not
//! held whole in memory: only enough of it to be dead-lettered as `oversized` is kept.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result};
use dataflows::event::MAX_MESSAGE_BYTES;

use super::{Each, Source};

/// A JSON Lines file or stdin as a source of one partition.
pub struct FileSource {
    path: String,
    partitions: [String; 1],
    lines: Receiver<io::Result<Vec<Line>>>,
}

impl FileSource {
    pub fn open(path: &str) -> Result<FileSource> {
        Ok(FileSource { path: path.to_owned(), partitions: [format!("file:{path}")], lines: open(path)? })
    }
}

impl Source for FileSource {
    fn partitions(&self) -> &[String] {
        &self.partitions
    }

    fn poll(&mut self, timeout: Duration, each: &mut Each<'_>) -> Result<bool> {
        match self.lines.recv_timeout(timeout) {
            Ok(batch) => {
                for line in batch.with_context(|| format!("reading {} failed", self.path))? {
                    each(0, &line.bytes, &|| format!("{}:{}", self.partitions[0], line.number));
                }
                Ok(false)
            }
            Err(RecvTimeoutError::Timeout) => Ok(false),
            Err(RecvTimeoutError::Disconnected) => Ok(true),
        }
    }
}

/// One line of input, without its line ending.
struct Line {
    /// 1-based line number.
    number: u64,
    bytes: Vec<u8>,
}

/// Lines per batch handed to the processor at most.
const BATCH_LINES: usize = 4096;

/// Opens `path` (`-` = stdin) and starts the reader thread. The receiver yields batches
/// of lines in order, an error if reading fails, and closes at the end of the input.
fn open(path: &str) -> Result<Receiver<io::Result<Vec<Line>>>> {
    let input: Box<dyn Read + Send> = if path == "-" {
        Box::new(io::stdin())
    } else {
        Box::new(File::open(path).with_context(|| format!("cannot open input file {path}"))?)
    };
    let (tx, rx) = sync_channel(16);
    thread::Builder::new().name("file-source".into()).spawn(move || {
        let mut reader = BufReader::with_capacity(1 << 20, input);
        let mut number = 0;
        let mut batch = Vec::with_capacity(BATCH_LINES);
        loop {
            let mut bytes = Vec::new();
            match read_line_capped(&mut reader, &mut bytes, MAX_MESSAGE_BYTES + 1) {
                Ok(true) => {
                    number += 1;
                    batch.push(Line { number, bytes });
                    // Hand over what we have before a read that may block (stdin, pipes).
                    if batch.len() >= BATCH_LINES || reader.buffer().is_empty() {
                        if tx.send(Ok(std::mem::replace(&mut batch, Vec::with_capacity(BATCH_LINES)))).is_err() {
                            return;
                        }
                    }
                }
                Ok(false) => break,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
        if !batch.is_empty() {
            let _ = tx.send(Ok(batch));
        }
    })?;
    Ok(rx)
}

/// Reads one line into `out`, keeping at most `cap` bytes of it and dropping `\n` and a
/// trailing `\r`. Returns false at the end of the input.
fn read_line_capped(reader: &mut impl BufRead, out: &mut Vec<u8>, cap: usize) -> io::Result<bool> {
    let mut started = false;
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            break;
        }
        started = true;
        let (chunk, used, done) = match memchr::memchr(b'\n', available) {
            Some(i) => (&available[..i], i + 1, true),
            None => (available, available.len(), false),
        };
        let room = cap.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        reader.consume(used);
        if done {
            break;
        }
    }
    if out.last() == Some(&b'\r') && out.len() < cap {
        out.pop();
    }
    Ok(started)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], cap: usize) -> Vec<Vec<u8>> {
        let mut r = BufReader::with_capacity(3, input);
        let mut out = Vec::new();
        loop {
            let mut line = Vec::new();
            if !read_line_capped(&mut r, &mut line, cap).unwrap() {
                return out;
            }
            out.push(line);
        }
    }

    #[test]
    fn splits_lines_and_strips_endings() {
        assert_eq!(lines(b"ab\r\ncd\n\nef", 100), vec![b"ab".to_vec(), b"cd".to_vec(), vec![], b"ef".to_vec()]);
        assert_eq!(lines(b"ab\n", 100), vec![b"ab".to_vec()]);
        assert!(lines(b"", 100).is_empty());
    }

    #[test]
    fn caps_long_lines_without_losing_the_next() {
        assert_eq!(lines(b"abcdefgh\nxy\n", 4), vec![b"abcd".to_vec(), b"xy".to_vec()]);
    }
}
