//! The W3C `traceparent` header (Trace Context, level 1): read as the
//! specification's processing model says, written in version 00.
//!
//! By hand rather than through the SDK's propagator, which works on a
//! `Context` and a map of strings: the facade reads the header from bytes
//! on every request and writes one per sampled attempt, and these are a
//! few dozen instructions each.

/// A `traceparent` value's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace id, never zero.
    pub trace_id: u128,
    /// The caller's span id, never zero.
    pub parent_id: u64,
    /// The caller's sampled flag.
    pub sampled: bool,
}

/// `00-` + 32 + `-` + 16 + `-` + 2.
pub const LENGTH: usize = 55;

impl TraceParent {
    /// Reads a header value; `None` when it is not a valid one, which
    /// starts a new trace. A version above 00 is read for its version-00
    /// fields, as the specification asks.
    pub fn parse(value: &[u8]) -> Option<Self> {
        if value.len() < LENGTH {
            return None;
        }
        let version = hex(&value[0..2])?;
        let longer_ok = version != 0 && (value.len() == LENGTH || value[LENGTH] == b'-');
        if version == 0xff || (value.len() != LENGTH && !longer_ok) {
            return None;
        }
        if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
            return None;
        }
        let trace_id = hex(&value[3..35])?;
        let parent_id = u64::try_from(hex(&value[36..52])?).ok()?;
        let flags = hex(&value[53..55])?;
        (trace_id != 0 && parent_id != 0).then_some(Self {
            trace_id,
            parent_id,
            sampled: flags & 1 == 1,
        })
    }

    /// The version-00 header value.
    pub fn encode(&self) -> [u8; LENGTH] {
        let mut out = [b'-'; LENGTH];
        out[0] = b'0';
        out[1] = b'0';
        put_hex(&mut out[3..35], &self.trace_id.to_be_bytes());
        put_hex(&mut out[36..52], &self.parent_id.to_be_bytes());
        put_hex(&mut out[53..55], &[u8::from(self.sampled)]);
        out
    }
}

/// Lower-case hex digits only, as the specification requires.
fn hex(digits: &[u8]) -> Option<u128> {
    digits.iter().try_fold(0u128, |value, &digit| {
        let nibble = match digit {
            b'0'..=b'9' => digit - b'0',
            b'a'..=b'f' => digit - b'a' + 10,
            _ => return None,
        };
        Some(value << 4 | u128::from(nibble))
    })
}

/// Two digits a byte, a byte at a time: shifting a `u128` a nibble at a
/// time cost several times as much on the request path.
fn put_hex(out: &mut [u8], bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0xf)];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn reads_and_writes_the_specification_example() {
        let parsed = TraceParent::parse(EXAMPLE).unwrap();
        assert_eq!(parsed.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(parsed.parent_id, 0x00f067aa0ba902b7);
        assert!(parsed.sampled);
        assert_eq!(&parsed.encode(), EXAMPLE);
    }

    #[test]
    fn refuses_what_the_specification_refuses() {
        for bad in [
            &b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0"[..],
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            b"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        // A later version is read for its known fields.
        let later = b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-whatever";
        assert!(TraceParent::parse(later).is_some_and(|p| !p.sampled));
    }
}
