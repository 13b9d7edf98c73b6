//! sipgate.io push API: one `application/x-www-form-urlencoded` POST per event. `newCall`
//! goes to the account's webhook URL and must be answered with XML naming where `answer`
//! and `hangup` go (`<Response onAnswer=".." onHangup=".."/>`), per call; `hangup` carries a
//! `cause`, no event carries a time or a duration. A forward or transfer starts a new
//! `callId` whose `origCallId` names the first, so a conversation groups under `origCallId`
//! and a `forwarded` hangup does not end it. Numbers are E.164 without `+`, or `anonymous`.
//! Authenticity: `X-Sipgate-Signature` = base64 RSA-SHA256 (PKCS#1 v1.5) of the raw body,
//! checked with sipgate's published public key (no shared secret exists).
//! Source: github.com/sipgate/docs docs/push-api/api-reference.md and faq.md (events,
//! fields, causes, the XML answer); github.com/sipgate/pushapi-request-verifier and
//! sipgate-io/sipgateio-node lib/webhook (the signature, the key, a captured request).

use base64::Engine as _;

use super::{
    Adapter, CallEvent, CallFacts, Direction, Disposition, Parsed, Reply, WebhookError, WebhookRequest, field,
    form_fields, required,
};

/// sipgate's push API public key (RSA 4096, SubjectPublicKeyInfo), as published in
/// sipgate-io/sipgateio-node lib/webhook/signatureVerifier.ts.
pub const SIPGATE_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MIICIjANBgkqhkiG9w0BAQEFAAOCAg8AMIICCgKCAgEAvFdlnqRfO5TmqzjtsFVC
qPz+oW+poi3lXQFvMJJMEAtlU4MbX+yuIkgnC+Qt3AQWIK+oWSEQiybg+p39wEMl
16PZxEzf9gONQvTg1XhyHnwqYUFQj/AoxPKGYC3jmdjZ224SrESiTN3CdxoOc3vk
cXiQstYE7SxnksPtzfk0aIOkicim5/tAP9izNQ18/zmX3ChjK2k72gf5dDlq+qZ8
pRiHAPZ64TySH6cLQDhaoh6Nbq8FEG3usXXPClbUMh2DZaTMPafpd+LNuTngJ/y+
KoZasVuFfXAeBqGA6l5d4Uedfr99Z6qjwDrJ8sU4z2Do9bJrbuqP+mOXEebhSI1K
vi8trEfrIt8hnDBGsBaB9NEO3kYxvDT2/PhC9fNYFocjEpZNd7/mUqTJDYlpa4UC
NDQaU+ATdXG8/P5sGAegks6MQTu+qe9XTO0CV48eswDkz6g3UbLOwmrJK59SjD3J
yAZ52sluwyDKRWw/PPTt8BTQLjvkdbiLUlc4ehJ4b1X7D7diYWHDPeFL47cAvaXh
dXVrZDeBJYibvD1jRx4ES0KlfhwzNXBYUoM/Movg9zMM2PzyHHKS//xIjwUC/FJ6
/6eykno0Hy2B1ev6s3hdY6VkN2zd7Wf+EK4DxRliwsg1U99szFE3ewLfexF+Uag5
M+TfPtOUumI/NHMTvsRW9+ECAwEAAQ==
-----END PUBLIC KEY-----";

/// The sipgate adapter.
#[derive(Debug, Clone)]
pub struct Sipgate {
    /// The RSA public key (PKCS#1 `RSAPublicKey` DER) that signs the pushes.
    pub public_key: Vec<u8>,
    /// The URL sipgate is told to send `answer` and `hangup` to (inflow's `/pbx/sipgate`
    /// as the world reaches it).
    pub public_url: String,
}

/// The `RSAPublicKey` inside a PEM `PUBLIC KEY` (SubjectPublicKeyInfo): ring verifies with
/// the bare key.
pub fn rsa_key_from_pem(pem: &str) -> Result<Vec<u8>, String> {
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect::<String>();
    let der = base64::engine::general_purpose::STANDARD.decode(b64.trim()).map_err(|e| format!("not PEM: {e}"))?;
    // SEQUENCE { SEQUENCE { algorithm }, BIT STRING { 0 unused bits, RSAPublicKey } }
    fn header(d: &[u8], at: usize, tag: u8) -> Result<(usize, usize), String> {
        if d.get(at) != Some(&tag) {
            return Err(format!("expected DER tag {tag:#x} at {at}"));
        }
        let first = *d.get(at + 1).ok_or("truncated")? as usize;
        if first < 0x80 {
            return Ok((at + 2, first));
        }
        let n = first & 0x7f;
        let len = d.get(at + 2..at + 2 + n).ok_or("truncated")?.iter().fold(0usize, |a, b| (a << 8) | *b as usize);
        Ok((at + 2 + n, len))
    }
    let (inner, _) = header(&der, 0, 0x30)?;
    let (alg, alg_len) = header(&der, inner, 0x30)?;
    let (bits, bits_len) = header(&der, alg + alg_len, 0x03)?;
    der.get(bits + 1..bits + bits_len).map(<[u8]>::to_vec).ok_or_else(|| "truncated key".to_string())
}

fn hangup(cause: &str) -> Option<Disposition> {
    match cause {
        // Hung up after the call was established: answered if an answer came.
        "normalClearing" => None,
        "busy" => Some(Disposition::Busy),
        "cancel" | "noAnswer" => Some(Disposition::Missed),
        _ => Some(Disposition::Failed),
    }
}

/// A number as sipgate writes it (E.164 without `+`), with the `+` back.
fn e164(n: Option<&str>) -> Option<String> {
    n.map(|n| if n.chars().all(|c| c.is_ascii_digit()) && n.len() > 6 { format!("+{n}") } else { n.to_string() })
}

fn xml_attr(s: &str) -> String {
    s.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;")
}

impl Adapter for Sipgate {
    fn name(&self) -> &'static str {
        "sipgate"
    }

    /// A new call is answered with the URLs of its follow-up events (without them sipgate
    /// sends neither `answer` nor `hangup`); the answers to those are discarded.
    fn reply(&self, _req: &WebhookRequest<'_>, parsed: &Parsed) -> Reply {
        let new_call = matches!(parsed, Parsed::Events(e) if e.iter().any(|e| e.event_id.ends_with(":newCall")));
        let body = if new_call {
            let u = xml_attr(&self.public_url);
            format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response onAnswer=\"{u}\" onHangup=\"{u}\"/>")
        } else {
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response/>".to_string()
        };
        Reply::Body { content_type: "application/xml; charset=utf-8", body }
    }

    fn parse(&self, req: &WebhookRequest<'_>) -> Result<Parsed, WebhookError> {
        let sig = req
            .headers
            .get("X-Sipgate-Signature")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v.trim()).ok())
            .ok_or_else(|| WebhookError::Unauthorized("missing X-Sipgate-Signature".into()))?;
        let key =
            ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, &self.public_key);
        if key.verify(req.body, &sig).is_err() {
            return Err(WebhookError::Unauthorized("X-Sipgate-Signature does not verify with sipgate's key".into()));
        }
        let f = form_fields(req.body)?;
        let event = required(&f, "event")?;
        let leg = required(&f, "callId")?.to_string();
        // One conversation across forwards and transfers.
        let call_id = field(&f, "origCallId").unwrap_or(&leg).to_string();
        let direction = match field(&f, "direction") {
            Some("out") => Direction::Outbound,
            _ => Direction::Inbound,
        };
        let now = req.received_at;
        let (from, to) = (e164(field(&f, "from")), e164(field(&f, "to")));
        let mut facts = CallFacts::between(direction, from, to);
        // A call diverted before it reached sipgate: the number first dialled.
        facts.line = e164(field(&f, "diversion"));
        let user = |k: &str| field(&f, k).map(str::to_string);
        let event_id = match event {
            "newCall" => {
                facts.started_at = Some(now);
                if direction == Direction::Outbound {
                    facts.extension = user("userId[]");
                }
                format!("{leg}:newCall")
            }
            "answer" => {
                facts.answered_at = Some(now);
                facts.extension = user("userId").or(user("answeringNumber"));
                facts.rank = 1;
                format!("{leg}:answer")
            }
            "hangup" => {
                let cause = field(&f, "cause").unwrap_or("normalClearing");
                if cause == "forwarded" {
                    // This leg ends; the conversation goes on under a new callId.
                    facts.rank = 1;
                } else {
                    facts.disposition = hangup(cause);
                    facts.ended_at = Some(now);
                    facts.is_final = true;
                    facts.rank = 2;
                }
                format!("{leg}:hangup")
            }
            other => return Ok(Parsed::Ignored(other.to_string())),
        };
        Ok(Parsed::Events(vec![CallEvent { call_id, event_id, facts }]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    fn req<'a>(headers: &'a HeaderMap, body: &'a [u8]) -> WebhookRequest<'a> {
        WebhookRequest { method: "POST", subpath: "", query: None, headers, body, received_at: chrono::Utc::now() }
    }

    #[test]
    fn a_request_sipgate_signed_verifies_and_a_changed_one_does_not() {
        // A real push captured in sipgate/pushapi-request-verifier src/test/resources/request.
        let body = "event=newCall&direction=in&from=491776249000&to=4928559389086&callId=54566B150B0C0D3A5D534\
            D5F565D7C5F54535A5C5B53525A7E5B5D5745504457444C425D5057&origCallId=54566B150B0C0D3A5D534D5F565D7C5\
            F54535A5C5B53525A7E5B5D5745504457444C425D5057&user%5B%5D=&xcid=8419b3450b75cd19";
        let sig = "DFWZPUEqJc3Jrn90Hu7NcSeAeL/7/0eDik7C2xpwc26OqB5nu4Irbo3LJ6qyRnbYyq2OnsN7u9gGc89yXWZ6NbtKmKp\
            rDG0Ony3Bm/Oxpf2dYPziHUz4uXoio03T6LeUzAOZ/N4LajzgLIepvbvUJ/vjPAiJvG7NMxllSNjjsiXQqDIvS5smeXhbfamVu\
            K/RheICMfpL0/qybDMLiOj0fw5whJE+Sz3t2a/8GndjsvVeA7BoMZeP8B2klMrZHmbaJlfteU/csEWBAq3c6gbt4oaMlPFkp7I\
            S50b4GJAkqrtllvYPhpRN2OhDa68TOfeTMs5wV+mGwuM6jM6vVDF2tC6R9uqepaCBNaXvpr/dOJoc9qava3HN77plOeGKSbX88\
            OEZl22bI/wTqn3lmwQgqbcd+k1Pt0LsAPuGQxvjseKankKvsvm8UuxboxLhnZIbd4DvIjokiKY701yV26vfaD6nan8EOnUA5wV\
            dmNM+HQhSWBZvW32kB3xvVhdVjnNfELGvZc/1IedHZ3KmFNBIxXuY0eQlsfdt1WAuFT3oDfEoMryahAoakjIFUk6nlLHX0UnqS\
            7fGXXx5AIvkIssxXP2iSg1ij1bsZJ/HmpyZInU9p7n1xMuXl/YD/Q8ITdCnHdKpcKznHEpAhRwG+gnF4rl/FZqAk8I1l+6p+wVRdWQ=";
        let a = Sipgate {
            public_key: rsa_key_from_pem(SIPGATE_PUBLIC_KEY).unwrap(),
            public_url: "https://crm.example.com/pbx/sipgate".into(),
        };
        let mut h = HeaderMap::new();
        h.insert("X-Sipgate-Signature", sig.parse().unwrap());
        let Ok(Parsed::Events(e)) = a.parse(&req(&h, body.as_bytes())) else { panic!("the captured push verifies") };
        assert_eq!(e[0].facts.external.as_deref(), Some("+491776249000"));
        assert_eq!(e[0].facts.did.as_deref(), Some("+4928559389086"));
        assert_eq!(e[0].call_id, "54566B150B0C0D3A5D534D5F565D7C5F54535A5C5B53525A7E5B5D5745504457444C425D5057");
        match a.reply(&req(&h, body.as_bytes()), &Parsed::Events(e)) {
            Reply::Body { body, .. } => assert!(body.contains(concat!(
                r#"<Response onAnswer="https://crm.example.com/pbx/sipgate" onHangup="https://crm.example.com"#,
                r#"/pbx/sipgate"/>"#,
            ))),
            other => panic!("{other:?}"),
        }
        let changed = body.replace("491776249000", "491776249001");
        assert!(matches!(a.parse(&req(&h, changed.as_bytes())), Err(WebhookError::Unauthorized(_))));
    }
}
