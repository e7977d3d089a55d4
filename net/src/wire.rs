//! The binary form of a packet on the link, stable and versioned.
//!
//! ```text
//! magic "WEIR" (4 bytes) | version (u16, little-endian) | postcard(Header) | postcard(payload)
//! ```
//!
//! The magic and version sit at fixed offsets so that any later version can still be told
//! apart; everything after them is postcard. The header names the port type, so a
//! subscriber checks what arrives against what it declared, and carries the publisher's stream
//! id (new each time a publisher opens, so a restarted publisher is told apart from a late or
//! repeated packet) and a sequence number per stream, so gaps (packets dropped by congestion
//! control or lost with a link) are counted.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use weir_engine::Timestamp;

/// The first bytes of every message.
pub const MAGIC: [u8; 4] = *b"WEIR";

/// The version of the encoding this build writes and reads.
pub const VERSION: u16 = 2;

/// What a message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// A packet: the payload follows the header.
    Data,
    /// The publisher's stream ended (no payload).
    End,
}

/// The header after the magic and version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header<'a> {
    /// What the message is.
    pub kind: Kind,
    /// Port type name of the payload (`audio`, `text`, ...); borrowed from the message when
    /// read, so reading a header allocates nothing.
    #[serde(borrow)]
    pub port: Cow<'a, str>,
    /// The publisher's stream: a random id drawn each time a publisher opens.
    pub stream: u64,
    /// Position of the message in its publisher's stream, from 0.
    pub seq: u64,
    /// The packet's media time.
    pub timestamp: Timestamp,
}

/// Why a message could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Too short to hold the magic and version.
    #[error("a message of {0} bytes is too short to be a Weir packet (not sent by net.publish?)")]
    Short(usize),
    /// The first bytes are not the magic.
    #[error("not a Weir packet: it starts with {0:02x?}, not \"WEIR\" (another program publishes on this key?)")]
    Foreign([u8; 4]),
    /// Written by an encoding version this build does not read.
    #[error("encoding version {found} is not supported (this build reads version {VERSION}): run the same Weir version on both sides")]
    Version {
        /// The version in the message.
        found: u16,
    },
    /// The header or payload does not decode.
    #[error("a corrupt {what}: {source}")]
    Corrupt {
        /// Which part failed.
        what: &'static str,
        /// The decoder's error.
        source: postcard::Error,
    },
    /// A payload could not be encoded.
    #[error("cannot encode a {port} payload: {source}")]
    Encode {
        /// The payload's port type.
        port: String,
        /// The encoder's error.
        source: postcard::Error,
    },
    /// No codec for a port type.
    #[error("no network encoding for port type `{port}` (known: {known})")]
    UnknownPort {
        /// The port type.
        port: String,
        /// The port types with an encoding.
        known: String,
    },
}

/// Writes the magic, version and `header` into `out` (cleared first); the payload is
/// appended after it.
pub fn write_header(header: &Header<'_>, out: &mut Vec<u8>) -> Result<(), WireError> {
    out.clear();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    let encoded =
        postcard::to_extend(header, std::mem::take(out)).map_err(|source| WireError::Encode {
            port: header.port.to_string(),
            source,
        })?;
    *out = encoded;
    Ok(())
}

/// Reads the magic, version and header of `message`; returns the header and the payload's
/// bytes.
pub fn read_header(message: &[u8]) -> Result<(Header<'_>, &[u8]), WireError> {
    if message.len() < 6 {
        return Err(WireError::Short(message.len()));
    }
    let magic: [u8; 4] = [message[0], message[1], message[2], message[3]];
    if magic != MAGIC {
        return Err(WireError::Foreign(magic));
    }
    let found = u16::from_le_bytes([message[4], message[5]]);
    if found != VERSION {
        return Err(WireError::Version { found });
    }
    postcard::take_from_bytes(&message[6..]).map_err(|source| WireError::Corrupt {
        what: "header",
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header<'static> {
        Header {
            kind: Kind::Data,
            port: "audio".into(),
            stream: 0x5eed,
            seq: 7,
            timestamp: Timestamp::from_nanos(123_456_789),
        }
    }

    #[test]
    fn a_header_reads_back_with_its_payload() {
        let mut out = Vec::new();
        write_header(&header(), &mut out).unwrap();
        out.extend_from_slice(b"payload");
        let (read, rest) = read_header(&out).unwrap();
        assert_eq!(read, header());
        assert_eq!(rest, b"payload");
    }

    #[test]
    fn foreign_short_and_future_messages_are_refused_with_the_reason() {
        assert!(matches!(read_header(b"WEI"), Err(WireError::Short(3))));
        let err = read_header(b"hello world").unwrap_err();
        assert!(err.to_string().contains("not a Weir packet"), "{err}");
        let mut out = Vec::new();
        write_header(&header(), &mut out).unwrap();
        out[4] = 9;
        let err = read_header(&out).unwrap_err();
        assert!(matches!(err, WireError::Version { found: 9 }));
        assert!(
            err.to_string()
                .contains(&format!("reads version {VERSION}")),
            "{err}"
        );
        let bad_header: Vec<u8> = out[..6].iter().copied().chain([1, 0xff]).collect();
        assert!(read_header(&bad_header).is_err());
        let mut cut = Vec::new();
        write_header(&header(), &mut cut).unwrap();
        cut.truncate(8);
        assert!(matches!(
            read_header(&cut),
            Err(WireError::Corrupt { .. }) | Err(WireError::Version { .. })
        ));
    }
}
