//! The wave sender's settings from `[waves]` and `[smtp]`, DKIM included.

use super::*;

/// Settings of the sender.
#[derive(Clone)]
pub struct WaveSettings {
    pub batch: usize,
    pub lease: chrono::Duration,
    pub poll: Duration,
    pub relay_rate: Option<u32>,
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub throttle_backoff: Duration,
    pub pool: usize,
    pub expansion_chunk: usize,
    pub tz: chrono_tz::Tz,
    pub message_id_domain: String,
    pub base_url: String,
    pub mailto: Option<String>,
    pub bounce_address: Option<String>,
    pub allow_optout_override: bool,
    /// DKIM signing, when configured.
    pub dkim: Option<Arc<lettre::message::dkim::DkimConfig>>,
}

/// The DKIM settings of `[waves]` (key already read and checked by the config loader).
pub(super) fn dkim_config(cfg: &Config) -> anyhow::Result<Option<Arc<lettre::message::dkim::DkimConfig>>> {
    use lettre::message::dkim::{DkimCanonicalization, DkimCanonicalizationType, DkimConfig, DkimSigningKey};
    let w = &cfg.waves;
    let (Some(domain), Some(selector), Some(key)) = (&w.dkim_domain, &w.dkim_selector, &w.dkim_private_key) else {
        return Ok(None);
    };
    let alg = crate::config::dkim_algorithm(&w.dkim_algorithm)
        .ok_or_else(|| anyhow::anyhow!("waves.dkim_algorithm '{}'", w.dkim_algorithm))?;
    let key = DkimSigningKey::new(key, alg).map_err(|e| anyhow::anyhow!("waves.dkim_private_key_file: {e:?}"))?;
    let headers = ["From", "To", "Subject", "Date", "Message-ID", "List-Unsubscribe", "List-Unsubscribe-Post"]
        .map(HeaderName::new_from_ascii_str)
        .to_vec();
    let canon =
        DkimCanonicalization { header: DkimCanonicalizationType::Relaxed, body: DkimCanonicalizationType::Relaxed };
    Ok(Some(Arc::new(DkimConfig::new(selector.clone(), domain.clone(), key, headers, canon))))
}

impl WaveSettings {
    pub fn from_config(cfg: &Config) -> anyhow::Result<WaveSettings> {
        let w = &cfg.waves;
        let from_domain =
            cfg.smtp.from.as_deref().and_then(|f| f.rsplit_once('@')).map(|(_, d)| d.trim_end_matches('>').to_string());
        Ok(WaveSettings {
            dkim: dkim_config(cfg)?,
            batch: w.batch_size.max(1),
            lease: chrono::Duration::seconds(w.claim_lease_secs.max(1) as i64),
            poll: Duration::from_millis(w.poll_interval_ms.max(10)),
            relay_rate: w.rate_per_minute,
            max_attempts: w.max_attempts.max(1),
            retry_base: Duration::from_secs(w.retry_base_secs.max(1)),
            retry_max: Duration::from_secs(w.max_retry_delay_secs.max(1)),
            throttle_backoff: Duration::from_secs(w.throttle_backoff_secs.max(1)),
            pool: (cfg.smtp.pool_size as usize).max(1),
            expansion_chunk: w.expansion_chunk.max(1),
            tz: cfg.tz(),
            message_id_domain: w.message_id_domain.clone().or(from_domain).unwrap_or_else(|| "localhost".into()),
            base_url: cfg
                .org
                .public_base_url
                .clone()
                .unwrap_or_else(|| format!("http://{}", cfg.http.listen))
                .trim_end_matches('/')
                .to_string(),
            mailto: w.unsubscribe_mailto.clone(),
            bounce_address: w.bounce_address.clone(),
            allow_optout_override: w.allow_optout_override,
        })
    }
}
