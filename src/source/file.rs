//! The file source: JSON Lines from a file or stdin, read on its own thread and handed
//! over in batches of lines with their line numbers and the byte offset after each.
//!
//! Owns reading, line splitting, resuming at a byte offset, and a file's [identity]
//! (its size and a hash of its first block) by which a restart recognises it. A line
//! longer than the message limit is not held whole in memory: only enough of it to be
//! dead-lettered as `oversized` is kept.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result};
use dataflows::event::MAX_MESSAGE_BYTES;
use dataflows::rows::Position;

use super::{Each, Source};

/// A JSON Lines file or stdin as a source of one partition.
pub struct FileSource {
    path: String,
    partitions: [String; 1],
    lines: Receiver<io::Result<Vec<Line>>>,
}

impl FileSource {
    /// Opens `path` (`-` = stdin, always read from its start) at `start`.
    pub fn open(path: &str, start: Position) -> Result<FileSource> {
        Ok(FileSource { path: path.to_owned(), partitions: [name(path)], lines: open(path, start)? })
    }
}

/// The partition name of the file at `path`: `file:<path as given>`.
pub fn name(path: &str) -> String {
    format!("file:{path}")
}

/// Bytes of a file's start that its identity hashes.
const HEAD: u64 = 4096;

/// What recognises a file again: `size=<bytes> head=<n>:<FNV-1a 64 of the first n bytes>`,
/// n being the first 4 KiB or the whole file if shorter. `None` for stdin.
pub fn identity(path: &str) -> Result<Option<String>> {
    if path == "-" {
        return Ok(None);
    }
    let size = std::fs::metadata(path).with_context(|| format!("cannot open input file {path}"))?.len();
    let n = size.min(HEAD);
    Ok(Some(format!("size={size} head={n}:{:016x}", head_hash(path, n)?)))
}

/// Whether the file at `path` is the one `recorded` (an [`identity`]) names, read up to
/// byte `offset`: the same first bytes, at least that long (it may have grown), and a
/// line ending just before `offset`.
pub fn is_same(path: &str, recorded: &str, offset: i64) -> Result<bool> {
    let head = recorded.split_once("head=").and_then(|(_, h)| h.split_once(':'));
    let Some((n, hash)) = head.and_then(|(n, h)| Some((n.parse::<u64>().ok()?, u64::from_str_radix(h, 16).ok()?))) else {
        return Ok(false);
    };
    let offset = offset.max(0) as u64;
    let size = std::fs::metadata(path).with_context(|| format!("cannot open input file {path}"))?.len();
    if size < n || size < offset || head_hash(path, n)? != hash {
        return Ok(false);
    }
    if offset == 0 {
        return Ok(true);
    }
    let mut before = [0u8];
    let mut file = File::open(path).with_context(|| format!("cannot read input file {path}"))?;
    file.seek(SeekFrom::Start(offset - 1))
        .and_then(|_| file.read_exact(&mut before))
        .with_context(|| format!("cannot read input file {path}"))?;
    Ok(before[0] == b'\n')
}

fn head_hash(path: &str, n: u64) -> Result<u64> {
    let mut head = Vec::new();
    File::open(path).and_then(|f| f.take(n).read_to_end(&mut head)).with_context(|| format!("cannot read input file {path}"))?;
    Ok(head.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)))
}

impl Source for FileSource {
    fn partitions(&self) -> &[String] {
        &self.partitions
    }

    fn poll(&mut self, timeout: Duration, each: &mut Each<'_>) -> Result<bool> {
        match self.lines.recv_timeout(timeout) {
            Ok(batch) => {
                for line in batch.with_context(|| format!("reading {} failed", self.path))? {
                    let next = Position { offset: line.end, line: line.number };
                    each(0, &line.bytes, next, &|| format!("{}:{}", self.partitions[0], line.number));
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
    number: i64,
    bytes: Vec<u8>,
    /// Byte offset just after the line (where the next one starts).
    end: i64,
}

/// Lines per batch handed to the processor at most.
const BATCH_LINES: usize = 4096;

/// Opens `path` (`-` = stdin) at `start` and starts the reader thread. The receiver
/// yields batches of lines in order, an error if reading fails, and closes at the end of
/// the input.
fn open(path: &str, start: Position) -> Result<Receiver<io::Result<Vec<Line>>>> {
    let input: Box<dyn Read + Send> = if path == "-" {
        Box::new(io::stdin())
    } else {
        let mut file = File::open(path).with_context(|| format!("cannot open input file {path}"))?;
        file.seek(SeekFrom::Start(start.offset.max(0) as u64)).with_context(|| format!("cannot seek in input file {path}"))?;
        Box::new(file)
    };
    let (mut number, mut end) = if path == "-" { (0, 0) } else { (start.line, start.offset) };
    let (tx, rx) = sync_channel(16);
    thread::Builder::new().name("file-source".into()).spawn(move || {
        let mut reader = BufReader::with_capacity(1 << 20, input);
        let mut batch = Vec::with_capacity(BATCH_LINES);
        loop {
            let mut bytes = Vec::new();
            match read_line_capped(&mut reader, &mut bytes, MAX_MESSAGE_BYTES + 1) {
                Ok(Some(consumed)) => {
                    number += 1;
                    end += consumed as i64;
                    batch.push(Line { number, bytes, end });
                    // Hand over what we have before a read that may block (stdin, pipes).
                    let full = batch.len() >= BATCH_LINES || reader.buffer().is_empty();
                    if full && tx.send(Ok(std::mem::replace(&mut batch, Vec::with_capacity(BATCH_LINES)))).is_err() {
                        return;
                    }
                }
                Ok(None) => break,
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
/// trailing `\r`. Returns the bytes consumed, line ending included, or `None` at the end
/// of the input.
fn read_line_capped(reader: &mut impl BufRead, out: &mut Vec<u8>, cap: usize) -> io::Result<Option<usize>> {
    let mut consumed = 0;
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            break;
        }
        let (chunk, used, done) = match memchr::memchr(b'\n', available) {
            Some(i) => (&available[..i], i + 1, true),
            None => (available, available.len(), false),
        };
        let room = cap.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        reader.consume(used);
        consumed += used;
        if done {
            break;
        }
    }
    if out.last() == Some(&b'\r') && out.len() < cap {
        out.pop();
    }
    Ok((consumed > 0).then_some(consumed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], cap: usize) -> Vec<Vec<u8>> {
        let mut r = BufReader::with_capacity(3, input);
        let (mut out, mut consumed) = (Vec::new(), 0);
        loop {
            let mut line = Vec::new();
            let Some(n) = read_line_capped(&mut r, &mut line, cap).unwrap() else {
                assert_eq!(consumed, input.len(), "every byte is counted once");
                return out;
            };
            consumed += n;
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

    #[test]
    fn resumes_at_a_byte_offset_with_line_numbers_going_on() {
        let dir = std::env::temp_dir().join(format!("cf-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("in.jsonl");
        std::fs::write(&path, b"one\r\ntwo\nthree\n").unwrap();
        let path = path.to_str().unwrap();
        let read_all = |start: Position| {
            let mut source = FileSource::open(path, start).unwrap();
            let mut got = Vec::new();
            while !source.poll(Duration::from_secs(1), &mut |_, bytes, next, label| got.push((bytes.to_vec(), next, label()))).unwrap() {}
            got
        };
        let all = read_all(Position::default());
        assert_eq!(all[1], (b"two".to_vec(), Position { offset: 9, line: 2 }, format!("file:{path}:2")));
        let rest = read_all(all[0].1);
        assert_eq!(rest, all[1..].to_vec(), "resuming after line 1 reads the same lines with the same positions");

        let id = identity(path).unwrap().unwrap();
        assert!(is_same(path, &id, 15).unwrap());
        std::fs::write(dir.join("in.jsonl"), b"one\r\ntwo\nthree\nfour\n").unwrap();
        assert!(is_same(path, &id, 15).unwrap(), "a file that grew is the same file");
        assert!(!is_same(path, &id, 14).unwrap(), "resuming mid-line is not resuming this file");
        std::fs::write(dir.join("in.jsonl"), b"uno\r\ntwo\nthree\n").unwrap();
        assert!(!is_same(path, &id, 15).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
