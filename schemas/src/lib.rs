//! ArmoredTwins wire formats: the protobuf messages of `proto/armoredtwins/v1` (prost), the topic
//! names of DESIGN.md, size limits, and a strict decoder.
//!
//! Every top-level message starts with `uint32 version = 1`; [`WIRE_VERSION`] is the only version this
//! build implements. [`decode_strict`] accepts a byte string only if it is exactly the canonical
//! encoding of the message it decodes to (no unknown fields, no duplicate fields, no non-minimal
//! varints), so two different accepted byte strings never decode to the same value.
#![forbid(unsafe_code)]

/// Generated protobuf types (package `armoredtwins.v1`).
#[allow(
    missing_docs,
    clippy::all,
    missing_debug_implementations,
    unused_qualifications
)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/armoredtwins.v1.rs"));

    impl core::fmt::Debug for KeyFile {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.debug_struct("KeyFile")
                .field("version", &self.version)
                .field("kind", &self.kind)
                .field("key_id", &self.key_id)
                .field("secret", &"<redacted>")
                .field("label", &self.label)
                .finish()
        }
    }

    // Share values never reach a log line.
    impl core::fmt::Debug for ShareBody {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.debug_struct("ShareBody")
                .field("version", &self.version)
                .field("twin_id", &self.twin_id)
                .field("device_id", &self.device_id)
                .field("item_id", &self.item_id)
                .field("slot", &self.slot)
                .field("node_index", &self.node_index)
                .field("values", &"<redacted>")
                .finish_non_exhaustive()
        }
    }

    // The response key opens the answer: never printed.
    impl core::fmt::Debug for RequestBody {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.debug_struct("RequestBody")
                .field("version", &self.version)
                .field("request_id", &self.request_id)
                .field("response_key", &"<redacted>")
                .field("body_len", &self.body.len())
                .finish()
        }
    }
}

pub mod limits;
pub mod refusal;
pub mod replay;
pub mod topics;

pub use refusal::Refusal;

use prost::Message;

/// The wire version every message of this build carries and accepts.
pub const WIRE_VERSION: u32 = 1;

/// Why a byte string is not an acceptable message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Not a protobuf encoding of the expected message.
    #[error("malformed {message}: {reason}")]
    Malformed {
        /// Message type.
        message: &'static str,
        /// What prost reported.
        reason: String,
    },
    /// Valid protobuf, but not the canonical encoding (unknown or repeated fields, long varints).
    #[error("non-canonical {message} encoding ({got} bytes, canonical {canonical})")]
    NonCanonical {
        /// Message type.
        message: &'static str,
        /// Bytes received.
        got: usize,
        /// Bytes of the canonical re-encoding.
        canonical: usize,
    },
    /// Larger than the limit for this message type.
    #[error("{message} of {got} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// Message type.
        message: &'static str,
        /// Bytes received.
        got: usize,
        /// Limit.
        limit: usize,
    },
}

/// Decodes `bytes` as `M`, refusing anything but `M`'s canonical encoding and anything over `limit`.
pub fn decode_strict<M: Message + Default>(
    message: &'static str,
    bytes: &[u8],
    limit: usize,
) -> Result<M, DecodeError> {
    if bytes.len() > limit {
        return Err(DecodeError::TooLarge {
            message,
            got: bytes.len(),
            limit,
        });
    }
    let msg = M::decode(bytes).map_err(|e| DecodeError::Malformed {
        message,
        reason: e.to_string(),
    })?;
    let canonical = msg.encoded_len();
    if canonical != bytes.len() || msg.encode_to_vec() != bytes {
        return Err(DecodeError::NonCanonical {
            message,
            got: bytes.len(),
            canonical,
        });
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_decode_refuses_unknown_and_duplicate_fields() {
        let s = v1::Signed {
            version: 1,
            body: b"abc".to_vec(),
            signature: vec![7; 64],
        };
        let bytes = s.encode_to_vec();
        let back: v1::Signed = decode_strict("Signed", &bytes, 1024).unwrap();
        assert_eq!(back, s);

        // Unknown field 15 (varint 1) appended.
        let mut unknown = bytes.clone();
        unknown.extend_from_slice(&[0x78, 0x01]);
        assert!(matches!(
            decode_strict::<v1::Signed>("Signed", &unknown, 1024),
            Err(DecodeError::NonCanonical { .. })
        ));

        // The version field repeated: prost keeps the last, the re-encoding is shorter.
        let mut dup = bytes.clone();
        dup.extend_from_slice(&[0x08, 0x01]);
        assert!(matches!(
            decode_strict::<v1::Signed>("Signed", &dup, 1024),
            Err(DecodeError::NonCanonical { .. })
        ));

        // A non-minimal varint for version = 1.
        let mut long = vec![0x08, 0x81, 0x00];
        long.extend_from_slice(&bytes[2..]);
        assert!(matches!(
            decode_strict::<v1::Signed>("Signed", &long, 1024),
            Err(DecodeError::NonCanonical { .. })
        ));

        assert!(matches!(
            decode_strict::<v1::Signed>("Signed", &bytes, 3),
            Err(DecodeError::TooLarge { .. })
        ));
        assert!(matches!(
            decode_strict::<v1::Signed>("Signed", &[0xff, 0xff], 1024),
            Err(DecodeError::Malformed { .. })
        ));
    }

    #[test]
    fn key_file_debug_redacts_secret() {
        let k = v1::KeyFile {
            version: 1,
            kind: v1::KeyKind::Pre as i32,
            key_id: vec![1; 16],
            secret: vec![0xAB; 32],
            label: "owner".into(),
        };
        let s = format!("{k:?}");
        assert!(s.contains("redacted"));
        assert!(!s.contains("171"), "secret bytes leaked into Debug: {s}");
    }
}
