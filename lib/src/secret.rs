//! The group secret: what makes a group private.
//!
//! Owns [`GroupSecret`]: 32 bytes, either random ([`GroupSecret::generate`]) or derived
//! from a passphrase with Argon2id, salted with the topic. With a secret, every connection
//! goes through libp2p's pre-shared-key private network (XSalsa20 keyed by the secret)
//! before anything else is spoken, so a peer without the secret cannot complete a
//! connection, read a byte, or inject one. It must never log or print the secret itself:
//! only its fingerprint.
//!
//! Why Argon2id for passphrases: someone who records a connection attempt can test
//! passphrase guesses offline against it, as fast as the derivation allows. Argon2id is
//! memory-hard, so each guess costs real memory and time, which slows such a search on
//! GPUs by orders of magnitude compared with a plain hash. The topic is the salt, so two
//! groups with the same passphrase still have different keys, and a precomputed table of
//! keys for common passphrases is useless. A random 32-byte secret needs no KDF at all.

use std::fmt;
use std::str::FromStr;

/// The secret of a private group: 32 bytes that every member holds.
#[derive(Clone, PartialEq, Eq)]
pub struct GroupSecret([u8; 32]);

/// Why a secret could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The text is not 64 hexadecimal digits.
    #[error(
        "a group secret is 64 hexadecimal digits (32 bytes); generate one with `WaveSyncDb::generate_secret()`"
    )]
    NotHex,
    /// The passphrase is too short to protect anything.
    #[error(
        "a passphrase needs at least 12 characters; longer is better, or use a generated secret"
    )]
    WeakPassphrase,
    /// The key derivation failed.
    #[error("deriving the key from the passphrase failed: {0}")]
    Kdf(String),
}

impl GroupSecret {
    /// A fresh random secret.
    pub fn generate() -> GroupSecret {
        GroupSecret(rand::random())
    }

    /// The secret with these bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> GroupSecret {
        GroupSecret(bytes)
    }

    /// The secret derived from `passphrase` for the group `topic` (Argon2id, the topic as
    /// salt). Every member must use the same passphrase and topic.
    pub fn from_passphrase(passphrase: &str, topic: &str) -> Result<GroupSecret, SecretError> {
        if passphrase.chars().count() < 12 {
            return Err(SecretError::WeakPassphrase);
        }
        // Argon2 wants a salt of at least 8 bytes; the prefix also separates this use.
        let salt = format!("wavesyncdb-group-secret/{topic}");
        let mut key = [0u8; 32];
        argon2::Argon2::default()
            .hash_password_into(passphrase.as_bytes(), salt.as_bytes(), &mut key)
            .map_err(|e| SecretError::Kdf(e.to_string()))?;
        Ok(GroupSecret(key))
    }

    /// The secret's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A short public fingerprint of the secret, safe to log and compare by eye.
    pub fn fingerprint(&self) -> String {
        libp2p::pnet::PreSharedKey::new(self.0)
            .fingerprint()
            .to_string()
    }

    /// The secret as 64 hexadecimal digits, to hand to other members.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub(crate) fn pre_shared_key(&self) -> libp2p::pnet::PreSharedKey {
        libp2p::pnet::PreSharedKey::new(self.0)
    }
}

impl FromStr for GroupSecret {
    type Err = SecretError;

    fn from_str(text: &str) -> Result<GroupSecret, SecretError> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut bytes).map_err(|_| SecretError::NotHex)?;
        Ok(GroupSecret(bytes))
    }
}

impl fmt::Debug for GroupSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the bytes: a Debug print may end up in a log.
        write!(f, "GroupSecret(fingerprint {})", self.fingerprint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_debug_hides_the_bytes() {
        let secret = GroupSecret::generate();
        assert_eq!(secret.to_hex().parse::<GroupSecret>().unwrap(), secret);
        assert!(!format!("{secret:?}").contains(&secret.to_hex()));
        assert!("zz".parse::<GroupSecret>().is_err());
    }

    #[test]
    fn passphrases_derive_per_topic() {
        let a = GroupSecret::from_passphrase("correct horse battery", "topic-a").unwrap();
        let again = GroupSecret::from_passphrase("correct horse battery", "topic-a").unwrap();
        let b = GroupSecret::from_passphrase("correct horse battery", "topic-b").unwrap();
        assert_eq!(a, again);
        assert_ne!(a, b);
        assert!(GroupSecret::from_passphrase("short", "t").is_err());
    }

    #[test]
    fn a_secret_error_converts_into_the_crate_error_with_its_message() {
        fn parse(text: &str) -> Result<GroupSecret, crate::Error> {
            Ok(text.parse::<GroupSecret>()?)
        }
        let message = parse("zz").unwrap_err().to_string();
        assert!(message.contains("64 hexadecimal digits"), "{message}");
        let hex = GroupSecret::generate().to_hex();
        assert_eq!(parse(&hex).unwrap().to_hex(), hex);
    }
}
