//! The chunked transfer coding (RFC 9112 §7.1), strictly: hex sizes of at most 16
//! digits, chunk extensions of at most 4 KiB a line in visible ASCII right after the
//! size's `;` (no whitespace before it: llhttp refuses that), trailer lines kept only
//! when each is a valid field line and not a framing or routing field
//! (`Content-Length`, `Transfer-Encoding`, `Host`), CRLF everywhere: nothing that a
//! second parser could frame differently. The HTTP/1
//! engine forwards chunked bodies byte for byte and uses this only to find where they
//! end; HTTP/2 responses also take the decoded data.

use crate::headers::is_tchar;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hex size (`digits` so far).
    Size {
        digits: u8,
    },
    /// After the size's `;`: extensions until CR.
    Extension,
    /// CR seen at the end of the size line.
    SizeLf,
    /// In chunk data.
    Data,
    /// CR expected after the data.
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// Inside a trailer line's name.
    TrailerName,
    /// Inside a trailer line's value.
    TrailerValue,
    TrailerLf,
    /// CR of the final empty line seen.
    EndLf,
    Done,
}

/// Follows a chunked body through any split of its bytes.
#[derive(Debug, Clone)]
pub struct Decoder {
    state: State,
    size: u64,
    /// Data bytes left in the current chunk.
    left: u64,
    /// Bytes of trailer section seen (bounded).
    trailer_bytes: usize,
    /// Bytes of the current size line's extensions (bounded).
    extension_bytes: usize,
    /// The current trailer line's name, lower-cased, as far as a forbidden name
    /// goes (`name_len` counts on past it).
    name: [u8; FORBIDDEN_LEN],
    name_len: usize,
}

/// Trailer fields refused: framing and routing fields, which a parser merging
/// trailers into the head (or refusing them, as llhttp does) would read otherwise.
const FORBIDDEN: [&[u8]; 3] = [b"content-length", b"transfer-encoding", b"host"];
const FORBIDDEN_LEN: usize = 17;

/// The body is not valid chunked coding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid chunked body")]
pub struct Invalid;

/// Longest trailer section accepted (ALB's whole-header limit).
const MAX_TRAILERS: usize = 64 * 1024;
/// Longest chunk extension accepted on one size line.
pub const MAX_EXTENSION: usize = 4 * 1024;

impl Default for Decoder {
    fn default() -> Self {
        Decoder {
            state: State::Size { digits: 0 },
            size: 0,
            left: 0,
            trailer_bytes: 0,
            extension_bytes: 0,
            name: [0; FORBIDDEN_LEN],
            name_len: 0,
        }
    }
}

impl Decoder {
    /// Whether the body's end (the last chunk and the trailer section) has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Reads `input` up to the end of the body; returns how many bytes belong to it.
    /// `data` receives the chunk data (decoded) as it passes.
    pub fn feed(&mut self, input: &[u8], mut data: impl FnMut(&[u8])) -> Result<usize, Invalid> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Size { digits } => {
                    let v = match b {
                        b'0'..=b'9' => b - b'0',
                        b'a'..=b'f' => b - b'a' + 10,
                        b'A'..=b'F' => b - b'A' + 10,
                        b';' if digits > 0 => {
                            self.state = State::Extension;
                            self.extension_bytes = 1;
                            i += 1;
                            continue;
                        }
                        b'\r' if digits > 0 => {
                            self.state = State::SizeLf;
                            i += 1;
                            continue;
                        }
                        _ => return Err(Invalid),
                    };
                    if digits >= 16 {
                        return Err(Invalid);
                    }
                    self.size = (self.size << 4) | u64::from(v);
                    self.state = State::Size { digits: digits + 1 };
                    i += 1;
                }
                State::Extension => {
                    match b {
                        b'\r' => self.state = State::SizeLf,
                        b' ' | b'\t' | 0x21..=0x7e => {
                            self.extension_bytes += 1;
                            if self.extension_bytes > MAX_EXTENSION {
                                return Err(Invalid);
                            }
                        }
                        _ => return Err(Invalid),
                    }
                    i += 1;
                }
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(Invalid);
                    }
                    i += 1;
                    if self.size == 0 {
                        self.state = State::TrailerStart;
                    } else {
                        self.left = self.size;
                        self.state = State::Data;
                    }
                    self.size = 0;
                }
                State::Data => {
                    let n = (input.len() - i).min(usize::try_from(self.left).unwrap_or(usize::MAX));
                    data(&input[i..i + n]);
                    i += n;
                    self.left -= n as u64;
                    if self.left == 0 {
                        self.state = State::DataCr;
                    }
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(Invalid);
                    }
                    self.state = State::DataLf;
                    i += 1;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(Invalid);
                    }
                    self.state = State::Size { digits: 0 };
                    i += 1;
                }
                State::TrailerStart => {
                    self.state = if b == b'\r' {
                        State::EndLf
                    } else if is_tchar(b) {
                        self.name_len = 0;
                        self.name_byte(b);
                        State::TrailerName
                    } else {
                        // A bare LF, a folded line, a line without a name.
                        return Err(Invalid);
                    };
                    self.trailer(1)?;
                    i += 1;
                }
                State::TrailerName => {
                    match b {
                        b':' => {
                            let name = &self.name[..self.name_len.min(FORBIDDEN_LEN)];
                            if self.name_len <= FORBIDDEN_LEN && FORBIDDEN.contains(&name) {
                                return Err(Invalid);
                            }
                            self.state = State::TrailerValue;
                        }
                        b if is_tchar(b) => self.name_byte(b),
                        _ => return Err(Invalid),
                    }
                    self.trailer(1)?;
                    i += 1;
                }
                State::TrailerValue => {
                    match b {
                        b'\r' => self.state = State::TrailerLf,
                        b' ' | b'\t' | 0x21..=0x7e | 0x80..=0xff => {}
                        _ => return Err(Invalid),
                    }
                    self.trailer(1)?;
                    i += 1;
                }
                State::TrailerLf => {
                    if b != b'\n' {
                        return Err(Invalid);
                    }
                    self.state = State::TrailerStart;
                    i += 1;
                }
                State::EndLf => {
                    if b != b'\n' {
                        return Err(Invalid);
                    }
                    self.state = State::Done;
                    return Ok(i + 1);
                }
                State::Done => return Ok(i),
            }
        }
        Ok(i)
    }

    fn name_byte(&mut self, b: u8) {
        if let Some(slot) = self.name.get_mut(self.name_len) {
            *slot = b.to_ascii_lowercase();
        }
        self.name_len += 1;
    }

    fn trailer(&mut self, n: usize) -> Result<(), Invalid> {
        self.trailer_bytes += n;
        if self.trailer_bytes > MAX_TRAILERS {
            return Err(Invalid);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(body: &[u8], split: usize) -> Result<(usize, Vec<u8>, bool), Invalid> {
        let mut d = Decoder::default();
        let mut out = Vec::new();
        let mut used = 0;
        for piece in body.chunks(split.max(1)) {
            let n = d.feed(piece, |b| out.extend_from_slice(b))?;
            used += n;
            if d.is_done() {
                break;
            }
        }
        Ok((used, out, d.is_done()))
    }

    #[test]
    fn it_should_find_the_end_of_a_body_with_extensions_and_trailers_split_anywhere() {
        let body =
            b"5;name=\"v\"\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Sum: 1\r\nX-B: 2\r\n\r\nNEXT";
        for split in [1, 2, 3, 5, 7, body.len()] {
            let (used, data, done) = decode(body, split).unwrap();
            assert!(done, "split {split}");
            assert_eq!(used, body.len() - 4, "split {split}");
            assert_eq!(data, b"hello0123456789");
        }
    }

    #[test]
    fn it_should_refuse_malformed_chunking() {
        for bad in [
            &b"ffffffffffffffffff\r\n"[..],
            b"-1\r\n",
            b"\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloX\r\n",
            b"0\r\nX: 1\n\r\n",
            b"0\r\n folded\r\n\r\n",
            b"g\r\n",
            b"5;a\nb\r\n",
            // Whitespace after the size must lead to an extension.
            b"5 \r\nhello\r\n",
            b"5 x\r\nhello\r\n",
            // Controls in an extension, and trailers that are not field lines.
            b"5;a\x01\r\nhello\r\n",
            b"0\r\nno colon\r\n\r\n",
            b"0\r\n: empty name\r\n\r\n",
            b"0\r\nX: a\x00b\r\n\r\n",
            b"0\r\nX Y: 1\r\n\r\n",
            b"1 ;a\r\nx\r\n0\r\n\r\n",
            b"0\r\nContent-Length: 5\r\n\r\n",
            b"0\r\ntransfer-encoding: chunked\r\n\r\n",
            b"0\r\nHOST: x\r\n\r\n",
        ] {
            assert!(
                decode(bad, 64).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn it_should_wait_for_more_of_an_unfinished_body() {
        let (used, _, done) = decode(b"5\r\nhel", 64).unwrap();
        assert_eq!(used, 6);
        assert!(!done);
    }

    #[test]
    fn it_should_cap_chunk_extensions_at_4_kib_a_line() {
        let mut body = b"5;".to_vec();
        body.extend(std::iter::repeat_n(b'a', MAX_EXTENSION));
        body.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
        assert!(decode(&body, 64).is_err());
        let ok = b"5;a=\"b c\"\r\nhello\r\n0;x\r\nContent-Lengthy: 1\r\nHos: 2\r\n\r\n";
        assert!(decode(ok, 3).unwrap().2);
    }
}
