//! Tokens sealed at rest: ChaCha20-Poly1305 (ring, already in the tree under rustls) with a
//! key derived from an instance secret, and the account name as associated data so a sealed
//! token copied to another account's row does not open.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

/// The key that seals and opens every grant's tokens.
pub struct Sealer {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl Sealer {
    /// A key from a secret of any length (hashed to 256 bits).
    pub fn new(secret: &str) -> Sealer {
        let digest = Sha256::digest(format!("inflow oauth seal v1\0{secret}").as_bytes());
        let key = UnboundKey::new(&CHACHA20_POLY1305, &digest).expect("a 32-byte key");
        Sealer { key: LessSafeKey::new(key), rng: SystemRandom::new() }
    }

    /// base64(nonce ‖ ciphertext ‖ tag).
    pub fn seal(&self, account: &str, clear: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).expect("the system's random source");
        let mut buf = clear.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(account.as_bytes()), &mut buf)
            .expect("sealing cannot fail for these sizes");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        STANDARD.encode(out)
    }

    /// The clear token, or None when the text was sealed with another key or for another
    /// account, or was altered.
    pub fn open(&self, account: &str, sealed: &str) -> Option<String> {
        let raw = STANDARD.decode(sealed).ok()?;
        if raw.len() < NONCE_LEN {
            return None;
        }
        let (nonce, rest) = raw.split_at(NONCE_LEN);
        let mut buf = rest.to_vec();
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let clear = self.key.open_in_place(nonce, Aad::from(account.as_bytes()), &mut buf).ok()?;
        String::from_utf8(clear.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_tokens_open_only_with_their_key_and_account() {
        let s = Sealer::new("instance secret");
        let sealed = s.seal("sales", "1//refresh-token");
        assert!(!sealed.contains("refresh"), "the clear token is not in the sealed text");
        assert_eq!(s.open("sales", &sealed).as_deref(), Some("1//refresh-token"));
        assert_ne!(s.seal("sales", "1//refresh-token"), sealed, "a fresh nonce each time");
        assert_eq!(s.open("news", &sealed), None, "bound to its account");
        assert_eq!(Sealer::new("another secret").open("sales", &sealed), None, "bound to its key");
        let mut tampered = STANDARD.decode(&sealed).unwrap();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(s.open("sales", &STANDARD.encode(tampered)), None, "altered text does not open");
        assert_eq!(s.open("sales", "not base64!"), None);
    }
}
