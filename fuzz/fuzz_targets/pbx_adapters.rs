//! Every PBX adapter's own reading of a request, behind its authentication: the harness
//! signs (or tokens) each input the way that provider does, so the fuzzer spends its time
//! in the field readers, not against the signature check. Then the reply and the merge of
//! the events, as the webhook would. Also the Asterisk AMI `Cdr` reader.
//!
//! Input: byte 0 picks the adapter, byte 1 the path below `/pbx/<name>`, then the first line
//! is the content type and the rest the body (for Mango, the `json` field), or `?query` for
//! a GET.
#![no_main]
use std::sync::LazyLock;

use inflow::ingest::pbx::{self, Adapter, Parsed, WebhookRequest};
use libfuzzer_sys::fuzz_target;

const TOKEN: &str = "fuzz-token";
const SECRET: &str = "fuzz-secret";
const BASE: &str = "https://crm.example.com";
const TZ: chrono_tz::Tz = chrono_tz::Europe::Moscow;

/// The tests' sipgate key pair (fixtures/pbx/sipgate/): sipgate signs with RSA, and the
/// fuzzer must get past that check.
static SIPGATE_KEY: LazyLock<ring::signature::RsaKeyPair> = LazyLock::new(|| {
    use base64::Engine as _;
    let pem = include_str!("../../fixtures/pbx/sipgate/test-signing-key.pem");
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
    ring::signature::RsaKeyPair::from_pkcs8(&der).unwrap()
});

static ADAPTERS: LazyLock<Vec<Box<dyn Adapter>>> = LazyLock::new(|| {
    use inflow::ingest::pbx::*;
    vec![
        Box::new(zadarma::Zadarma { name: "zadarma", secret: SECRET.into(), tz: TZ, max_age: None }),
        Box::new(mango::Mango { api_key: TOKEN.into(), api_salt: SECRET.into() }),
        Box::new(twilio::Twilio {
            auth_token: SECRET.into(),
            public_base_url: BASE.into(),
            urls: Default::default(),
            dial_action_twiml: twilio::EMPTY_TWIML.into(),
        }),
        Box::new(generic::Generic { token: Some(TOKEN.into()), hmac_secret: Some(SECRET.into()) }),
        Box::new(placetel::Placetel { secret: SECRET.into() }),
        Box::new(sipgate::Sipgate {
            public_key: sipgate::rsa_key_from_pem(include_str!("../../fixtures/pbx/sipgate/test-signing-key.pub.pem"))
                .unwrap(),
            public_url: format!("{BASE}/pbx/sipgate"),
        }),
        Box::new(cti::Cti { token: TOKEN.into() }),
        Box::new(sipuni::Sipuni { token: TOKEN.into() }),
        Box::new(uis::Uis { token: TOKEN.into(), tz: TZ }),
        Box::new(yeastar::Yeastar { token: TOKEN.into(), tz: TZ }),
        Box::new(threecx::ThreeCx { token: TOKEN.into() }),
        Box::new(itoolabs::ItooLabs { crm_token: TOKEN.into() }),
    ]
});

/// `FUZZ_TRACE=1`: print what each adapter made of each input (to check that the seeds get
/// past authentication: `fuzz run pbx_adapters seeds/pbx_adapters -- -runs=0`).
static TRACE: LazyLock<bool> = LazyLock::new(|| std::env::var_os("FUZZ_TRACE").is_some());

/// Paths the providers call.
const PATHS: &[&str] = &[
    "",
    "/",
    "/status",
    "/dial",
    "/recording",
    "/events/call",
    "/events/summary",
    "/lookup",
    "/report",
    "/events/recording",
];

fuzz_target!(|data: &[u8]| {
    let [pick, path, rest @ ..] = data else { return };
    let split = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
    let ct = String::from_utf8_lossy(&rest[..split]).into_owned();
    let input = rest.get(split + 1..).unwrap_or(&[]);
    let which = *pick as usize % (ADAPTERS.len() + 1);
    if which == ADAPTERS.len() {
        ami(input);
        return;
    }
    let adapter = &ADAPTERS[which];
    let path = PATHS[*path as usize % PATHS.len()];
    let mut headers = axum::http::HeaderMap::new();
    let mut set = |name: &'static str, value: &str| {
        if let Ok(v) = axum::http::HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    };
    set("content-type", &ct);
    // An input that starts with `?` is a GET with that query string (3CX lookups, UIS and
    // Zadarma GET forms) where the provider calls with GET; anything else is a POST body.
    let get = input.first() == Some(&b'?') && adapter.methods().contains(&"GET");
    let (mut body, mut query) = match get {
        true => (Vec::new(), Some(String::from_utf8_lossy(&input[1..]).into_owned())),
        false => (input.to_vec(), None),
    };
    match adapter.name() {
        "zadarma" => {
            let f = pbx::form_fields(&body).unwrap_or_default();
            let event = pbx::field(&f, "event").unwrap_or("");
            if let Some(s) = pbx::zadarma::signed_string(event, &f) {
                set("Signature", &pbx::zadarma::signature(SECRET, &s));
            }
        }
        "mango" => {
            let json = String::from_utf8_lossy(input);
            let sign = pbx::mango::sign(TOKEN, &json, SECRET);
            body = serde_urlencoded::to_string([("vpbx_api_key", TOKEN), ("sign", &sign), ("json", &json)])
                .unwrap()
                .into_bytes();
        }
        "twilio" => {
            let f = pbx::form_fields(&body).unwrap_or_default();
            let url = match query.as_deref().filter(|q| !q.is_empty()) {
                Some(q) => format!("{BASE}/pbx/twilio{path}?{q}"),
                None => format!("{BASE}/pbx/twilio{path}"),
            };
            set("X-Twilio-Signature", &pbx::twilio::signature(SECRET, &url, &f));
        }
        "generic" if path.len() % 2 == 0 => set("Authorization", &format!("Bearer {TOKEN}")),
        "generic" => set("X-Inflow-Signature", &pbx::generic::signature(SECRET, &body)),
        "placetel" => set("X-PLACETEL-SIGNATURE", &pbx::placetel::signature(SECRET, &body)),
        "sipgate" => {
            let mut sig = vec![0; SIPGATE_KEY.public().modulus_len()];
            let rng = ring::rand::SystemRandom::new();
            SIPGATE_KEY.sign(&ring::signature::RSA_PKCS1_SHA256, &rng, &body, &mut sig).unwrap();
            use base64::Engine as _;
            set("X-Sipgate-Signature", &base64::engine::general_purpose::STANDARD.encode(sig));
        }
        // The token providers (CTI, Sipuni, UIS, Yeastar, 3CX, ITooLabs) all take it in the
        // query string (`token`, ITooLabs `crm_token`), so the path stays the provider's.
        _ => {
            let theirs = query.map(|q| format!("&{q}")).unwrap_or_default();
            query = Some(format!("token={TOKEN}&crm_token={TOKEN}{theirs}"));
        }
    }
    let method = if get { "GET" } else { "POST" };
    let req = WebhookRequest {
        method,
        subpath: path,
        query: query.as_deref(),
        headers: &headers,
        body: &body,
        received_at: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
    };
    let parsed = adapter.parse(&req);
    if *TRACE {
        eprintln!("{} {path}: {parsed:?}", adapter.name());
    }
    let Ok(parsed) = parsed else { return };
    let _ = adapter.reply(&req, &parsed);
    match &parsed {
        Parsed::Events(events) => {
            let facts: Vec<_> = events.iter().map(|e| e.facts.clone()).collect();
            let _ = pbx::merge(&facts);
        }
        Parsed::Lookup(number) => {
            let _ = adapter.card_reply(number, None);
        }
        Parsed::Ignored(_) | Parsed::Echo(_) => {}
    }
});

/// AMI: `Key: Value` lines, one frame, read as a `Cdr` event.
fn ami(input: &[u8]) {
    let text = String::from_utf8_lossy(input);
    let frame: pbx::ami::Frame = text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let _ = pbx::ami::cdr_event(&frame, TZ, "RU");
}
