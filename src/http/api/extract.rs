//! Request parsing for the admin API: JSON bodies with errors as API errors, ids in
//! paths, and the query parameters of list routes.

use super::*;

// Request parsing

/// A JSON body, with errors as API errors: too large → 413, not JSON / wrong type /
/// unknown field → 400 naming the field.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            let status = e.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(status, "body_too_large", "the request body is over the limit")
            } else {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_body", e.body_text())
            }
        })?;
        let bytes = if bytes.iter().all(u8::is_ascii_whitespace) { Bytes::from_static(b"{}") } else { bytes };
        parse_json(&bytes).map(Body)
    }
}

pub(super) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = if path == "." || path.is_empty() { inner.to_string() } else { format!("{path}: {inner}") };
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", msg)
    })
}

pub(super) fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse().map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "bad_id", "the id in the path is not a UUID"))
}

pub(super) fn bad(e: QueryError) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, e.code, e.message)
}

/// Query parameters of list routes (public for the fuzz target `api_params`).
pub struct ListParams {
    pub view: Option<String>,
    pub page: i64,
    pub limit: i64,
    pub sort: Option<String>,
    pub group_by: Option<String>,
    /// View parameters (`id`, `campaign`, `all_states`, `days`).
    pub extra: BTreeMap<String, String>,
    pub filters: Vec<(String, String)>,
}

pub(super) const VIEW_PARAMS: [&str; 4] = ["id", "campaign", "all_states", "days"];

pub fn list_params(raw: Option<&str>) -> Result<ListParams, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_query", e.to_string()))?;
    let mut p = ListParams {
        view: None,
        page: 1,
        limit: 50,
        sort: None,
        group_by: None,
        extra: BTreeMap::new(),
        filters: Vec::new(),
    };
    let int = |k: &str, v: &str, lo: i64, hi: i64| -> Result<i64, ApiError> {
        v.parse::<i64>().ok().filter(|n| (lo..=hi).contains(n)).ok_or_else(|| {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_pagination", format!("{k}: an integer from {lo} to {hi}"))
        })
    };
    let mut seen = std::collections::HashSet::new();
    for (k, v) in pairs {
        let reserved =
            matches!(k.as_str(), "view" | "page" | "limit" | "sort" | "group_by") || VIEW_PARAMS.contains(&k.as_str());
        if reserved && !seen.insert(k.clone()) {
            return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad_parameter", format!("{k} is given twice")));
        }
        match k.as_str() {
            "view" => p.view = Some(v),
            "page" => p.page = int("page", &v, 1, 1_000_000)?,
            "limit" => p.limit = int("limit", &v, 1, q::MAX_LIMIT)?,
            "sort" => p.sort = Some(v),
            "group_by" => p.group_by = Some(v),
            k if VIEW_PARAMS.contains(&k) => {
                // Checked here whatever the view, so a wrong value is never silently ignored.
                let ok = match k {
                    "id" | "campaign" => v.parse::<Uuid>().is_ok(),
                    "all_states" => v == "true" || v == "false",
                    _ => v.parse::<u32>().is_ok_and(|d| (1..=366).contains(&d)),
                };
                if !ok {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "bad_parameter",
                        format!("{k}: not a valid value"),
                    ));
                }
                p.extra.insert(k.to_string(), v);
            }
            _ => p.filters.push((k, v)),
        }
    }
    Ok(p)
}
