//! Phone lines as data (DOMAIN §2.13, issue 20): `GET|POST /api/v1/pbx-lines`, `GET|PATCH|
//! DELETE /api/v1/pbx-lines/{id}`. Marketers add a campaign's tracking number and point it
//! at the campaign (or one campaign activity) without an operator or a restart.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::Method;
use axum::routing::get;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value as J, json};
use uuid::Uuid;

use super::{Access, Area, Body, BodyDoc, ReplyDoc, RouteDef, parse_id, route};
use crate::crm::calls::PbxLine;
use crate::http::{ApiError, AppState};

/// A line as written (POST: `did` and `owner` required; PATCH: any field, `null` clears).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct LineBody {
    did: Option<String>,
    #[serde(default, deserialize_with = "given")]
    name: Option<Option<String>>,
    owner: Option<String>,
    #[serde(default, deserialize_with = "given")]
    campaignactivityid: Option<Option<Uuid>>,
    #[serde(default, deserialize_with = "given")]
    campaignid: Option<Option<Uuid>>,
    create_leads: Option<bool>,
    #[serde(default, deserialize_with = "given")]
    min_answered_seconds: Option<Option<i64>>,
    #[serde(default, deserialize_with = "given")]
    lead_subject: Option<Option<String>>,
}

/// A field that was given, `null` included (absent stays `None`).
fn given<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

impl LineBody {
    fn apply(self, l: &mut PbxLine) {
        if let Some(v) = self.did {
            l.did = v;
        }
        if let Some(v) = self.name {
            l.name = v;
        }
        if let Some(v) = self.owner {
            l.owner = v;
        }
        if let Some(v) = self.campaignactivityid {
            l.campaignactivityid = v;
        }
        if let Some(v) = self.campaignid {
            l.campaignid = v;
        }
        if let Some(v) = self.create_leads {
            l.create_leads = v;
        }
        if let Some(v) = self.min_answered_seconds {
            l.min_answered_seconds = v;
        }
        if let Some(v) = self.lead_subject {
            l.lead_subject = v;
        }
    }
}

fn missing(field: &str) -> ApiError {
    ApiError::new(axum::http::StatusCode::UNPROCESSABLE_ENTITY, "required_field", format!("{field} is required"))
}

async fn list_h(State(s): State<AppState>) -> Result<Json<J>, ApiError> {
    let items = s.store.pbx_lines().await?;
    Ok(Json(json!({"total": items.len(), "items": items})))
}

async fn get_h(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<J>, ApiError> {
    Ok(Json(json!(s.store.pbx_line(parse_id(&id)?).await?)))
}

async fn create_h(State(s): State<AppState>, Body(b): Body<LineBody>) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    if b.did.is_none() {
        return Err(missing("did"));
    }
    if b.owner.is_none() {
        return Err(missing("owner"));
    }
    let now = Utc::now();
    let mut l = PbxLine {
        pbx_lineid: Uuid::now_v7(),
        did: String::new(),
        name: None,
        owner: String::new(),
        campaignactivityid: None,
        campaignid: None,
        create_leads: false,
        min_answered_seconds: None,
        lead_subject: None,
        from_config: false,
        createdon: now,
        modifiedon: now,
    };
    b.apply(&mut l);
    let l = s.store.create_pbx_line(l).await?;
    Ok((axum::http::StatusCode::CREATED, Json(json!(l))).into_response())
}

async fn patch_h(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Body(b): Body<LineBody>,
) -> Result<Json<J>, ApiError> {
    let mut l = s.store.pbx_line(parse_id(&id)?).await?;
    b.apply(&mut l);
    l.modifiedon = Utc::now();
    Ok(Json(json!(s.store.update_pbx_line(l).await?)))
}

async fn delete_h(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<J>, ApiError> {
    let id = parse_id(&id)?;
    s.store.delete_pbx_line(id).await?;
    Ok(Json(json!({"deleted": id})))
}

/// The line body's schema (the OpenAPI document).
pub(super) fn named_body(name: &str) -> Option<J> {
    let ostr = json!({"type": "string", "nullable": true, "maxLength": 200});
    let ouuid = json!({"type": "string", "format": "uuid", "nullable": true});
    let props = json!({
        "did": {"type": "string", "maxLength": 40, "description": "the number dialled, any format (normalised \
            to E.164)"},
        "name": ostr, "owner": {"type": "string", "maxLength": 200, "description": "a user id or internal e-mail"},
        "campaignactivityid": ouuid, "campaignid": ouuid, "create_leads": {"type": "boolean"},
        "min_answered_seconds": {"type": "integer", "minimum": 0, "maximum": 86400, "nullable": true},
            "lead_subject": ostr});
    Some(match name {
        "PbxLine" => {
            json!({"type": "object", "additionalProperties": false, "required": ["did", "owner"], "properties": props})
        }
        "PbxLinePatch" => json!({"type": "object", "additionalProperties": false, "properties": props}),
        _ => return None,
    })
}

/// The routes of this module.
pub(super) fn routes(t: &mut Vec<RouteDef>) {
    let (r, w) = (Access::Read(Area::Marketing), Access::Write(Area::Marketing));
    t.push(RouteDef {
        reply: ReplyDoc::Object,
        ..route(
            Method::GET,
            "/api/v1/pbx-lines",
            r,
            "Phone lines (DOMAIN §2.13): main lines and tracking numbers",
            get(list_h),
        )
    });
    t.push(RouteDef {
        body: BodyDoc::Named("PbxLine"),
        status: 201,
        ..route(
            Method::POST,
            "/api/v1/pbx-lines",
            w,
            "Add a line: its number, owner, campaign (or campaign activity) and lead settings; in effect for \
                the next call",
            axum::routing::post(create_h),
        )
    });
    t.push(route(Method::GET, "/api/v1/pbx-lines/{id}", r, "One phone line", get(get_h)));
    t.push(RouteDef {
        body: BodyDoc::Named("PbxLinePatch"),
        ..route(Method::PATCH, "/api/v1/pbx-lines/{id}", w, "Change a phone line", axum::routing::patch(patch_h))
    });
    t.push(route(
        Method::DELETE,
        "/api/v1/pbx-lines/{id}",
        w,
        "Remove a phone line (calls to it then have no line)",
        axum::routing::delete(delete_h),
    ));
}
