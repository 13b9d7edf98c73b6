//! Who may call the admin API: roles, the areas routes touch, the bearer-token check
//! (tokens kept as SHA-256) and the guard every route sits behind.

use super::*;

/// Roles a token carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    Marketer,
    Viewer,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "marketer" => Some(Role::Marketer),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Marketer => "marketer",
            Role::Viewer => "viewer",
        }
    }
}

/// What a route touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    /// Users, accounts, contacts, opportunities, activities.
    Sales,
    /// Leads: marketers read them.
    Leads,
    /// Lists, campaigns, waves, responses, bulk operations.
    Marketing,
    /// Inbound events, quarantine, PBX calls, suppression, dup candidates.
    Ops,
    /// The audit of writes through the API: admins only.
    Audit,
    /// The API description.
    Meta,
}

/// The access a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read(Area),
    Write(Area),
    /// Any role: the handler lets the caller act on their own work (and their reports'),
    /// admins on everything (R-ACT-1).
    OwnWork,
}

/// admin: everything; marketer: lists, campaigns, waves, responses, and reading leads;
/// viewer: reading.
pub fn allowed(role: Role, access: Access) -> bool {
    matches!(
        (role, access),
        (Role::Admin, _)
            | (_, Access::OwnWork)
            | (_, Access::Read(Area::Meta))
            | (Role::Viewer, Access::Read(Area::Sales | Area::Leads | Area::Marketing | Area::Ops))
            | (Role::Marketer, Access::Read(Area::Marketing | Area::Leads))
            | (Role::Marketer, Access::Write(Area::Marketing))
    )
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: Uuid,
    pub role: Role,
    pub token: String,
}

/// Lowercase hex SHA-256 of a token: what config and database hold.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random token (256 bits, URL-safe).
pub fn new_token() -> String {
    use base64::Engine as _;
    let mut b = [0u8; 32];
    b[..16].copy_from_slice(Uuid::new_v4().as_bytes());
    b[16..].copy_from_slice(Uuid::new_v4().as_bytes());
    format!("ifl_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

/// The user, role and name of a live token (from the config or the database), if it is one.
/// The console's token sign-in uses it too.
pub async fn resolve_token(state: &AppState, token: &str) -> Result<Option<(Uuid, Role, String)>, ApiError> {
    let hash = token_hash(token);
    let found = match state
        .api
        .tokens
        .iter()
        .find(|t| subtle::ConstantTimeEq::ct_eq(t.sha256.as_bytes(), hash.as_bytes()).into())
    {
        Some(t) => Some((t.user, t.role.clone(), t.name.clone())),
        None => {
            state.store.api_token_by_hash(&hash, chrono::Utc::now()).await?.map(|t| (t.systemuserid, t.role, t.name))
        }
    };
    Ok(found.and_then(|(user, role, name)| Role::parse(&role).map(|r| (user, r, name))))
}

/// Resolves the bearer token of a request, then checks the route's access.
pub(super) async fn authorize(state: &AppState, headers: &HeaderMap, access: Access) -> Result<Caller, ApiError> {
    let unauthorized = || ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "a valid bearer token is required");
    let raw = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).ok_or_else(unauthorized)?;
    let token = raw
        .strip_prefix("Bearer ")
        .or_else(|| raw.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(unauthorized)?;
    let (user, role, name) = resolve_token(state, token).await?.ok_or_else(unauthorized)?;
    // A token acts as its user: one who is gone or disabled can no longer act.
    match state.store.get::<SystemUser>(user).await? {
        Some(u) if !u.isdisabled => {}
        _ => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the token's user is disabled or unknown",
            ));
        }
    }
    if !allowed(role, access) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("the {role:?} role may not do this").to_lowercase(),
        ));
    }
    Ok(Caller { user, role, token: name })
}

pub(super) async fn guard(State((state, access)): State<(AppState, Access)>, mut req: Request, next: Next) -> Response {
    let c = match authorize(&state, req.headers(), access).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let write = !matches!(*req.method(), axum::http::Method::GET | axum::http::Method::HEAD);
    let what = write.then(|| {
        let route = req.extensions().get::<axum::extract::MatchedPath>().map(|m| m.as_str().to_string());
        (req.method().to_string(), route, req.uri().path().to_string())
    });
    req.extensions_mut().insert(c.clone());
    let resp = next.run(req).await;
    // Every write that took effect is kept with who made it. After the handler's own commit:
    // a crash between the two loses the audit line, never the write.
    if let Some((method, route, path)) = what
        && resp.status().is_success()
    {
        let w = crate::store::api::ApiWrite {
            user: c.user,
            role: c.role.as_str().to_string(),
            token_name: c.token,
            method,
            route: route.unwrap_or_else(|| path.clone()),
            path,
            status: resp.status().as_u16(),
        };
        if let Err(e) = state.store.record_api_write(&w, chrono::Utc::now()).await {
            tracing::error!(error = %e, route = %w.route, "could not record the write in the audit");
        }
    }
    resp
}
