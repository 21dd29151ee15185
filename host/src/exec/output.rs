//! Text a sandboxed party wrote, made safe to log: control characters
//! escaped (so it can neither forge a log line nor drive a terminal), length
//! capped, and, for a running agent, lines capped in rate.

use std::io::Read;
use std::time::{Duration, Instant};

/// Longest agent output line logged; the rest of the line is cut.
const MAX_LINE: usize = 4096;
/// Lines per stream logged in one [`WINDOW`]; the rest are counted and dropped.
const MAX_LINES_PER_WINDOW: u32 = 200;
/// The window the line rate is measured over.
const WINDOW: Duration = Duration::from_secs(1);

/// Cuts to `max` bytes on a char boundary and escapes control characters
/// (newlines included, C1 controls such as the 8-bit CSI too) and the
/// bidirectional overrides that reorder what a reader sees, so untrusted
/// text can neither forge a line nor drive a terminal wherever it is shown.
pub(crate) fn escape_controls(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    for c in text.chars() {
        if out.len() >= max {
            out.push('…');
            break;
        }
        let bidi = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if c.is_control() || bidi {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Which of an agent's output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Logs each line `pipe` carries through `tracing` (target `par::agent`,
/// with the app id and the stream), until the pipe closes: lines cut at
/// [`MAX_LINE`] bytes, escaped, and at most [`MAX_LINES_PER_WINDOW`] per
/// second, with one warning for each window whose excess was dropped.
pub(crate) fn log_lines(mut pipe: impl Read + Send + 'static, app_id: String, stream: Stream) {
    std::thread::spawn(move || {
        let mut limiter = RateLimit::default();
        let mut line: Vec<u8> = Vec::new();
        let mut cut = false;
        let mut buffer = [0u8; 16 * 1024];
        loop {
            let n = match pipe.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            for &byte in &buffer[..n] {
                if byte == b'\n' {
                    limiter.emit(&app_id, stream, &line, cut, Instant::now());
                    line.clear();
                    cut = false;
                } else if line.len() < MAX_LINE {
                    line.push(byte);
                } else {
                    cut = true;
                }
            }
        }
        if !line.is_empty() {
            limiter.emit(&app_id, stream, &line, cut, Instant::now());
        }
        limiter.flush(&app_id, stream);
    });
}

/// Counts lines per window, logging those under the cap.
#[derive(Default)]
struct RateLimit {
    window_start: Option<Instant>,
    logged: u32,
    dropped: u64,
}

impl RateLimit {
    /// Logs `line`, read at `now`, unless its window's cap is reached; says whether it did.
    fn emit(&mut self, app_id: &str, stream: Stream, line: &[u8], cut: bool, now: Instant) -> bool {
        if self
            .window_start
            .is_none_or(|start| now.duration_since(start) >= WINDOW)
        {
            self.flush(app_id, stream);
            self.window_start = Some(now);
            self.logged = 0;
        }
        if self.logged >= MAX_LINES_PER_WINDOW {
            self.dropped += 1;
            return false;
        }
        self.logged += 1;
        let mut text = escape_controls(&String::from_utf8_lossy(line), MAX_LINE);
        if cut {
            text.push('…');
        }
        tracing::info!(target: "par::agent", app_id, stream = stream.name(), "{text}");
        true
    }

    fn flush(&mut self, app_id: &str, stream: Stream) {
        if self.dropped > 0 {
            tracing::warn!(
                target: "par::agent",
                app_id,
                stream = stream.name(),
                dropped = self.dropped,
                "agent output over the line rate cap was dropped"
            );
            self.dropped = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_over_the_rate_cap_are_counted_and_dropped() {
        let mut limiter = RateLimit::default();
        let start = Instant::now();
        let logged = (0..MAX_LINES_PER_WINDOW + 50)
            .filter(|_| limiter.emit("app", Stream::Stdout, b"line", false, start))
            .count();
        assert_eq!(logged, MAX_LINES_PER_WINDOW as usize);
        assert_eq!(limiter.dropped, 50);
        // The next window logs again, and reports what the last one dropped.
        assert!(limiter.emit("app", Stream::Stdout, b"line", false, start + WINDOW));
        assert_eq!(limiter.dropped, 0, "the drop was reported");
    }

    #[test]
    fn control_characters_are_escaped_and_long_text_cut() {
        assert_eq!(escape_controls("a\nb\x1b[2J", 100), "a\\nb\\u{1b}[2J");
        assert_eq!(escape_controls("\u{9b}2J\u{202e}txt", 100), "\\u{9b}2J\\u{202e}txt");
        let long = "x".repeat(5000);
        assert!(escape_controls(&long, 1024).len() <= 1024 + '…'.len_utf8());
    }
}
