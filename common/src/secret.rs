//! A secret that is kept only as its SHA-256 digest and compared in constant
//! time (hashing first hides the length too): the admin token and the
//! internal token. Never printed.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

#[derive(Clone)]
pub struct SecretDigest([u8; 32]);

impl SecretDigest {
    pub fn of(secret: &[u8]) -> Self {
        Self(Sha256::digest(secret).into())
    }

    /// Whether `presented` is the secret, in constant time.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented).into();
        self.0.ct_eq(&presented).into()
    }
}

impl fmt::Debug for SecretDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretDigest(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_secret_matches_and_nothing_of_it_is_printed() {
        let digest = SecretDigest::of(b"s3cret-token");
        assert!(digest.matches(b"s3cret-token"));
        assert!(!digest.matches(b"s3cret-tokeN"));
        assert!(!digest.matches(b""));
        assert!(!format!("{digest:?}").contains("s3cret"));
    }
}
