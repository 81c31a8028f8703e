//! Just enough of RFC 6455 to end a tunnelled websocket politely: follow the frame
//! boundaries of the server-to-client stream, so that a Close frame (1001, going
//! away) can be sent to the client between two frames when a target's deregistration
//! delay ends.

/// A Close frame from a server (unmasked) with status 1001 "going away".
pub const CLOSE_GOING_AWAY: [u8; 4] = [0x88, 0x02, 0x03, 0xE9];

/// Follows frame boundaries in a byte stream.
#[derive(Debug, Default, Clone)]
pub struct FrameTracker {
    header: [u8; 14],
    header_len: usize,
    /// Payload bytes left in the current frame.
    payload_left: u64,
    /// The stream is not websocket framing (or got lost): never inject.
    lost: bool,
}

impl FrameTracker {
    /// Header length once the first two bytes are known.
    fn header_needed(&self) -> usize {
        if self.header_len < 2 {
            return 2;
        }
        let masked = self.header[1] & 0x80 != 0;
        let ext = match self.header[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        2 + ext + if masked { 4 } else { 0 }
    }

    fn payload_len(&self) -> u64 {
        match self.header[1] & 0x7f {
            126 => u64::from(u16::from_be_bytes([self.header[2], self.header[3]])),
            127 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&self.header[2..10]);
                u64::from_be_bytes(b)
            }
            n => u64::from(n),
        }
    }

    /// Follows `data`, the next bytes of the stream, frame by frame.
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() && !self.lost {
            if self.payload_left > 0 {
                let n = (self.payload_left).min(data.len() as u64) as usize;
                self.payload_left -= n as u64;
                data = &data[n..];
                continue;
            }
            // Collect the header of the next frame.
            self.header[self.header_len] = data[0];
            self.header_len += 1;
            data = &data[1..];
            if self.header_len >= 2 && self.header_len == self.header_needed() {
                self.payload_left = self.payload_len();
                self.header_len = 0;
            } else if self.header_len >= self.header.len() {
                self.lost = true;
            }
        }
    }

    /// Whether the stream turned out not to be websocket framing.
    pub fn is_lost(&self) -> bool {
        self.lost
    }

    /// Whether the stream is between two frames.
    pub fn at_boundary(&self) -> bool {
        !self.lost && self.header_len == 0 && self.payload_left == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload_len: usize, masked: bool) -> Vec<u8> {
        let mut f = vec![0x82];
        let m = if masked { 0x80 } else { 0 };
        if payload_len < 126 {
            f.push(m | payload_len as u8);
        } else if payload_len <= 0xffff {
            f.push(m | 126);
            f.extend_from_slice(&(payload_len as u16).to_be_bytes());
        } else {
            f.push(m | 127);
            f.extend_from_slice(&(payload_len as u64).to_be_bytes());
        }
        if masked {
            f.extend_from_slice(&[1, 2, 3, 4]);
        }
        f.extend(std::iter::repeat_n(7u8, payload_len));
        f
    }

    #[test]
    fn it_should_follow_frames_of_every_length_form_split_anywhere() {
        let mut stream = Vec::new();
        for (len, masked) in [
            (0, false),
            (5, false),
            (125, true),
            (126, false),
            (70_000, false),
            (3, true),
        ] {
            stream.extend(frame(len, masked));
        }
        for split in [1, 2, 3, 7, 1000, stream.len()] {
            let mut t = FrameTracker::default();
            for chunk in stream.chunks(split) {
                t.feed(chunk);
            }
            assert!(t.at_boundary(), "split {split}");
        }
        let mut t = FrameTracker::default();
        t.feed(&stream[..stream.len() - 1]);
        assert!(!t.at_boundary());
        let mut t = FrameTracker::default();
        t.feed(&frame(200, false)[..3]);
        assert!(!t.at_boundary(), "inside a header");
    }
}
