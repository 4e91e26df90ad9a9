//! serde helpers for payloads: MessagePack through rmp-serde, compact encoding.

use serde::{de::DeserializeOwned, Serialize};

use crate::WireError;

/// Serializes `value` as MessagePack, appending to `out`.
///
/// The encoding is rmp-serde's compact one: a struct is an array of its fields in declaration
/// order, without field names. It is small and fast, and makes field order part of the
/// message's schema: add fields only at the end (as `Option`s with `#[serde(default)]`, so
/// older nodes' payloads still decode), never reorder or remove them; any other change needs
/// a new tag.
///
/// Fails only if `value`'s `Serialize` implementation does ([`WireError::Encode`]).
pub fn to_payload<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), WireError> {
    rmp_serde::encode::write(out, value)
        .map_err(|err| WireError::Encode(format!("{}: {err}", std::any::type_name::<T>())))
}

/// Deserializes a `T` from a payload written by [`to_payload`].
///
/// Bytes after the value are ignored (as `rmp_serde::from_slice` does). Fails with
/// [`WireError::Malformed`], naming the type, if the bytes are not a `T`.
pub fn from_payload<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    rmp_serde::from_slice(bytes).map_err(|err| {
        WireError::Malformed(format!(
            "payload is not a valid {}: {err}",
            std::any::type_name::<T>()
        ))
    })
}
