//! Errors of framing, decoding and payload (de)serialization.

use std::{error, fmt, io};

/// Why a frame or a payload could not be encoded or decoded.
///
/// Every decoding error means the peer sent something this node cannot read: the connection
/// should be closed and the error logged and counted. [`FrameTooLarge`](Self::FrameTooLarge)
/// leaves the frame in the buffer (it was never read); [`UnknownKind`](Self::UnknownKind) and
/// [`Malformed`](Self::Malformed) have consumed the offending frame.
#[derive(Debug)]
#[non_exhaustive]
pub enum WireError {
    /// A frame's length is over the codec's `max_frame`: announced by a peer (refused before
    /// anything is allocated for it), or of a frame this node tried to encode.
    FrameTooLarge {
        /// The frame's length in bytes, without the 4-byte length prefix.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// The frame's kind byte names no frame of this protocol version.
    UnknownKind(u8),
    /// The frame's length was acceptable but its body was not: what was wrong, and where.
    Malformed(String),
    /// The underlying stream failed, or ended in the middle of a frame.
    Io(io::Error),
    /// A value could not be serialized into a payload (its `Serialize` implementation failed):
    /// a fault of the sending code, not of the peer.
    Encode(String),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::FrameTooLarge { len, max } => write!(
                f,
                "frame of {len} bytes is over the limit of {max} bytes: send smaller messages, \
                 or raise max_frame on every node"
            ),
            WireError::UnknownKind(kind) => write!(
                f,
                "unknown frame kind 0x{kind:02x}: the peer speaks another protocol version, or \
                 is not a postbox node"
            ),
            WireError::Malformed(what) => write!(f, "malformed frame: {what}"),
            WireError::Io(err) => write!(f, "i/o error on a framed stream: {err}"),
            WireError::Encode(what) => write!(f, "cannot encode payload: {what}"),
        }
    }
}

impl error::Error for WireError {
    fn source(&self) -> Option<&(dyn error::Error + 'static)> {
        match self {
            WireError::Io(err) => Some(err),
            _ => None,
        }
    }
}

impl From<io::Error> for WireError {
    fn from(err: io::Error) -> Self {
        WireError::Io(err)
    }
}
