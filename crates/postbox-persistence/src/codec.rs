//! How events, snapshots and durable states are written, and read back after their type
//! changed.
//!
//! Every stored value carries a **tag** (which type it is: [`Versioned::TAG`]) and a
//! **version** (which shape of that type: [`Versioned::VERSION`]) beside its payload, the
//! value as MessagePack with named fields (`rmp_serde::to_vec_named`). Named fields make the
//! common changes free: a field added with `#[serde(default)]` or removed reads old payloads
//! without any upcasting. For anything else — a renamed field, a split event, a new enum
//! layout — bump `VERSION` and map the old shape in [`Versioned::upcast`].
//!
//! Reading a stored value: if its tag and version are the type's current ones, the payload
//! is decoded directly; otherwise `upcast` is asked, with the tag, the version and the
//! payload ([`Stored`]). Its default refuses, so a value the code cannot read is an error
//! naming the tag and version, never a silently skipped event.
//!
//! ```
//! use postbox_persistence::codec::{self, DecodeError, Stored, Versioned};
//! use serde::{Deserialize, Serialize};
//!
//! /// Version 1 stored a bare amount.
//! #[derive(Serialize, Deserialize)]
//! struct DepositedV1 { amount: u64 }
//!
//! /// Version 2 names the currency.
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! struct Deposited { cents: u64, currency: String }
//!
//! impl Versioned for Deposited {
//!     const TAG: &'static str = "bank.deposited";
//!     const VERSION: u32 = 2;
//!
//!     fn upcast(old: &Stored<'_>) -> Result<Self, DecodeError> {
//!         match (old.tag(), old.version()) {
//!             ("bank.deposited", 1) => {
//!                 let v1: DepositedV1 = old.decode()?;
//!                 Ok(Deposited { cents: v1.amount, currency: "EUR".into() })
//!             }
//!             _ => Err(DecodeError::unsupported(old, Self::TAG, Self::VERSION)),
//!         }
//!     }
//! }
//!
//! let old = codec::encode(&DepositedV1 { amount: 5 }).unwrap();
//! let read: Deposited = codec::decode("bank.deposited", 1, &old).unwrap();
//! assert_eq!(read, Deposited { cents: 5, currency: "EUR".into() });
//! ```

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;

/// A type that can be stored: events, snapshot states, durable states.
///
/// `TAG` names the type in the store, for good: pick a stable name (`"bank.account-event"`),
/// not `std::any::type_name`, which changes when code moves. `VERSION` (default 1) is the
/// shape written now; readers of older (or other) tags and versions go through
/// [`upcast`](Self::upcast). See the [module docs](self).
pub trait Versioned: Serialize + DeserializeOwned + Send + 'static {
    /// The stable name of this type in the store.
    const TAG: &'static str;
    /// The version of the shape this code writes.
    const VERSION: u32 = 1;

    /// Reads a value stored under another tag or version. The default refuses with
    /// [`DecodeError::unsupported`].
    fn upcast(old: &Stored<'_>) -> Result<Self, DecodeError> {
        Err(DecodeError::unsupported(old, Self::TAG, Self::VERSION))
    }
}

/// A stored value as found: its tag, version and payload. Given to [`Versioned::upcast`].
#[derive(Debug, Clone, Copy)]
pub struct Stored<'a> {
    tag: &'a str,
    version: u32,
    payload: &'a [u8],
}

impl<'a> Stored<'a> {
    /// A stored value with these parts.
    pub fn new(tag: &'a str, version: u32, payload: &'a [u8]) -> Self {
        Self {
            tag,
            version,
            payload,
        }
    }

    /// The tag it was stored with.
    pub fn tag(&self) -> &'a str {
        self.tag
    }

    /// The version it was stored with.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The raw payload (MessagePack with named fields).
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// Decodes the payload as `T` — typically the old shape, kept in the code as a private
    /// type, which `upcast` then maps to the current one.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, DecodeError> {
        rmp_serde::from_slice(self.payload).map_err(|e| {
            DecodeError::new(format!(
                "payload of {} version {} does not decode as {}: {e}",
                self.tag,
                self.version,
                std::any::type_name::<T>()
            ))
        })
    }
}

/// A stored value that could not be read, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(String);

impl DecodeError {
    /// An error with this explanation.
    pub fn new(reason: impl fmt::Display) -> Self {
        Self(reason.to_string())
    }

    /// The default answer of [`Versioned::upcast`]: this code knows no way to read `old` as
    /// the type tagged `tag` at `version`.
    pub fn unsupported(old: &Stored<'_>, tag: &str, version: u32) -> Self {
        let why = if old.tag() != tag {
            format!("this code reads {tag}, not {}", old.tag())
        } else if old.version() > version {
            format!(
                "version {} is newer than this code's {version}",
                old.version()
            )
        } else {
            format!(
                "no upcaster from version {} to {version} (implement Versioned::upcast)",
                old.version()
            )
        };
        Self(format!(
            "cannot read {} version {}: {why}",
            old.tag(),
            old.version()
        ))
    }

    /// The explanation.
    pub fn reason(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

/// A value that could not be encoded (serde refused it: a map with non-string keys under a
/// serializer that needs them, a custom `Serialize` that failed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeError(String);

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EncodeError {}

/// Encodes `value` the way stores keep payloads: MessagePack with named fields.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, EncodeError> {
    rmp_serde::to_vec_named(value).map_err(|e| {
        EncodeError(format!(
            "{} does not encode: {e}",
            std::any::type_name::<T>()
        ))
    })
}

/// Reads a value stored with `tag` and `version`: decoded directly when they are `T`'s
/// current ones, else through [`Versioned::upcast`].
pub fn decode<T: Versioned>(tag: &str, version: u32, payload: &[u8]) -> Result<T, DecodeError> {
    let stored = Stored::new(tag, version, payload);
    if tag == T::TAG && version == T::VERSION {
        stored.decode()
    } else {
        T::upcast(&stored)
    }
}
