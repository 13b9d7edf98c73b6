//! The signed unsubscribe links of wave mail (RFC 8058 one-click): tokens signed with
//! HMAC-SHA256 under a key from the config or kept in the database.

use super::*;

/// Signs and checks unsubscribe tokens: `<delivery id hex>.<HMAC-SHA256, 128 bits, base64url>`.
#[derive(Clone)]
pub struct LinkSigner {
    pub(super) key: Vec<u8>,
}

impl LinkSigner {
    pub fn new(key: &[u8]) -> LinkSigner {
        LinkSigner { key: key.to_vec() }
    }

    pub(super) fn mac(&self, id: Uuid) -> String {
        let mut m = Hmac::<sha2::Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        m.update(b"inflow-unsubscribe:");
        m.update(id.as_bytes());
        let full = m.finalize().into_bytes();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&full[..16])
    }

    pub fn token(&self, id: Uuid) -> String {
        format!("{}.{}", id.simple(), self.mac(id))
    }

    /// The delivery a token names, if its signature is ours (constant-time comparison).
    pub fn verify(&self, token: &str) -> Option<Uuid> {
        let (id, sig) = token.split_once('.')?;
        if id.len() != 32 {
            return None;
        }
        let id = Uuid::parse_str(id).ok()?;
        let want = self.mac(id);
        use subtle::ConstantTimeEq;
        bool::from(want.as_bytes().ct_eq(sig.as_bytes())).then_some(id)
    }
}

/// The key that signs unsubscribe links: the configured one, else one generated once and
/// kept in the database (shared by every instance).
pub async fn link_signer(cfg: &Config, store: &Store) -> anyhow::Result<LinkSigner> {
    let key = match &cfg.waves.unsubscribe_secret {
        Some(k) => k.trim().to_string(),
        None => store.instance_secret("unsubscribe", Utc::now()).await?,
    };
    Ok(LinkSigner::new(key.as_bytes()))
}
