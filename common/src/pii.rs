//! `Pii<T>`: personal data that may travel through the code but never reaches a log in clear.
//!
//! `Display` and `Debug` print a short fingerprint instead of the value. The fingerprint is a
//! hash keyed with a per-process random salt, so lines about the same person can be correlated
//! within one run, but the value cannot be recovered or matched against a list across runs.

use std::fmt;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// A value that identifies a person: a name, an ID number, a phone number, an IP address.
///
/// Wrap such values before they can reach `tracing`. Serialization is transparent (API
/// responses need the real value); only formatting is redacted.
#[derive(Clone, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Pii<T>(T);

impl<T> Pii<T> {
    /// Wraps `value`.
    pub fn new(value: T) -> Self {
        Pii(value)
    }

    /// The value in clear, for code that must use it (never for logs).
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Unwraps the value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Pii<T> {
    fn from(value: T) -> Self {
        Pii(value)
    }
}

fn salt() -> &'static [u8; 16] {
    static SALT: OnceLock<[u8; 16]> = OnceLock::new();
    SALT.get_or_init(rand::random)
}

impl<T: fmt::Display> Pii<T> {
    /// The redacted form: `pii:` and eight hex digits of a salted hash of the value.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        h.update(salt());
        h.update(self.0.to_string().as_bytes());
        let digest = h.finalize();
        let mut out = String::from("pii:");
        for b in &digest[..4] {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }
}

impl<T: fmt::Display> fmt::Display for Pii<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.fingerprint())
    }
}

impl<T: fmt::Display> fmt::Debug for Pii<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.fingerprint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_never_shows_the_value() {
        let id = Pii::new("11010519491231002X");
        for shown in [format!("{id}"), format!("{id:?}"), format!("{id:#?}")] {
            assert!(!shown.contains("1101051949"), "{shown}");
            assert!(shown.starts_with("pii:"), "{shown}");
        }
        assert_eq!(id.expose(), &"11010519491231002X");
    }

    #[test]
    fn same_value_same_fingerprint_within_a_run() {
        let a = Pii::new("10.1.2.3");
        let b = Pii::new("10.1.2.3");
        let c = Pii::new("10.1.2.4");
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
    }

    #[test]
    fn serializes_transparently_for_api_bodies() {
        let name = Pii::new("王小明".to_string());
        assert_eq!(serde_json::to_string(&name).unwrap(), "\"王小明\"");
    }
}
