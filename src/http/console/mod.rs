//! The web console (issue 19): server-rendered pages for managers and marketers on the
//! daemon's own listener — a dashboard of charts, their open work with complete / cancel,
//! campaigns with budget and response figures, a wave's progress with pause / resume /
//! cancel. minijinja templates embedded in the binary, plain HTML forms, inline SVG charts
//! (`chart`), no JavaScript needed. English and Russian (`i18n`). Sign-in, sessions and form
//! tokens are `session`; every page and action checks the role with the API's matrix.
//!
//! Paths: `/`, `/work`, `/leads`, `/leads/{id}`, `/records/{contacts|accounts|opportunities}/{id}`,
//! `/campaigns/{id}`, `/lists/{id}`, `/campaigns`, `/waves/{id}`, `/signin`, `/signout`,
//! `/ops/quarantine` (and each held message), `/ops/suppression`, `/console.css`, `/console.js`.
//! Nothing here touches the API, PBX or unsubscribe paths.

use std::sync::OnceLock;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use minijinja::Environment;
use serde_json::{Value as J, json};

use super::AppState;
use crate::http::api::{Access, Area};
use session::Signed;

mod activities;
mod campaign;
pub mod chart;
mod customers;
pub mod i18n;
mod leads;
mod ops;
mod pages;
pub mod password;
mod records;
pub mod session;

pub use session::ConsoleSettings;

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../../../templates/console/base.html")),
    ("signin.html", include_str!("../../../templates/console/signin.html")),
    ("error.html", include_str!("../../../templates/console/error.html")),
    ("dashboard.html", include_str!("../../../templates/console/dashboard.html")),
    ("work.html", include_str!("../../../templates/console/work.html")),
    ("campaigns.html", include_str!("../../../templates/console/campaigns.html")),
    ("wave.html", include_str!("../../../templates/console/wave.html")),
    ("chart.html", include_str!("../../../templates/console/chart.html")),
    ("leads.html", include_str!("../../../templates/console/leads.html")),
    ("new_lead.html", include_str!("../../../templates/console/new_lead.html")),
    ("new_lead_form.html", include_str!("../../../templates/console/new_lead_form.html")),
    ("lead.html", include_str!("../../../templates/console/lead.html")),
    ("record.html", include_str!("../../../templates/console/record.html")),
    ("campaign.html", include_str!("../../../templates/console/campaign.html")),
    ("waves_table.html", include_str!("../../../templates/console/waves_table.html")),
    ("list.html", include_str!("../../../templates/console/list.html")),
    ("timeline.html", include_str!("../../../templates/console/timeline.html")),
    ("activity.html", include_str!("../../../templates/console/activity.html")),
    ("new_activity.html", include_str!("../../../templates/console/new_activity.html")),
    ("customers.html", include_str!("../../../templates/console/customers.html")),
    ("pager.html", include_str!("../../../templates/console/pager.html")),
    ("quarantine.html", include_str!("../../../templates/console/quarantine.html")),
    ("held.html", include_str!("../../../templates/console/held.html")),
    ("suppression.html", include_str!("../../../templates/console/suppression.html")),
];

const STYLESHEET: &str = include_str!("../../../templates/console/console.css");
const SCRIPT: &str = include_str!("../../../templates/console/console.js");

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut e = Environment::new();
        for (name, src) in TEMPLATES {
            e.add_template(name, src).expect("the console's templates parse (unit test `templates_parse`)");
        }
        e
    })
}

/// A page from a template (HTML-escaped by default; charts are passed already escaped).
pub(crate) fn render(name: &str, ctx: J, status: StatusCode) -> Response {
    let out = env().get_template(name).and_then(|t| t.render(minijinja::Value::from_serialize(&ctx)));
    match out {
        Ok(html) => {
            let mut r = (status, Html(html)).into_response();
            // Pages are per person: never cached by a proxy, never framed by another site.
            let h = r.headers_mut();
            h.insert(header::CACHE_CONTROL, "no-store".parse().expect("static header"));
            h.insert(header::X_FRAME_OPTIONS, "DENY".parse().expect("static header"));
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'"
                    .parse()
                    .expect("static header"),
            );
            r
        }
        Err(e) => {
            tracing::error!(error = %e, template = name, "console page failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// A page saying what went wrong, in the person's language.
pub(crate) fn page_error(lang: i18n::Lang, status: StatusCode, message: &str) -> Response {
    render(
        "error.html",
        json!({"tr": i18n::words(lang), "lang": lang.code(), "status": status.as_u16(), "message": message}),
        status,
    )
}

/// What every page's frame needs: words, the person, the form token, the active tab.
pub(crate) fn frame(who: &Signed, active: &str) -> serde_json::Map<String, J> {
    let mut m = serde_json::Map::new();
    m.insert("tr".into(), json!(i18n::words(who.lang)));
    m.insert("lang".into(), json!(who.lang.code()));
    m.insert("user_name".into(), json!(who.name));
    m.insert("role".into(), json!(who.role.as_str()));
    m.insert("csrf".into(), json!(who.csrf));
    m.insert("active".into(), json!(active));
    m.insert(
        "can".into(),
        json!({
            "leads": who.can(Access::Read(Area::Leads)),
            "sales": who.can(Access::Read(Area::Sales)),
            "marketing": who.can(Access::Read(Area::Marketing)),
            "run_waves": who.can(Access::Write(Area::Marketing)),
            "ops": who.can(Access::Read(Area::Ops)),
        }),
    );
    m
}

/// 303 See Other: after a form post, and to the sign-in page.
pub(crate) fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}

async fn stylesheet() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "max-age=3600")], STYLESHEET)
        .into_response()
}

async fn script() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "max-age=3600")], SCRIPT)
        .into_response()
}

/// The console's routes.
pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(pages::dashboard))
        .route("/work", get(pages::work))
        .route("/work/{id}/{action}", post(pages::work_action))
        .route("/leads", get(leads::list))
        .route("/leads/new", post(leads::create))
        .route("/leads/{id}", get(leads::show))
        .route("/leads/{id}/{action}", post(leads::act))
        .route("/records/{set}", get(customers::list).post(customers::create))
        .route("/records/{set}/{id}", get(records::show).post(records::edit))
        .route("/records/opportunities/{id}/{action}", post(records::opportunity_action))
        .route("/activities", post(activities::create))
        .route("/activities/{id}", get(activities::show).post(activities::edit))
        .route("/campaigns", get(pages::campaigns))
        .route("/campaigns/{id}", get(campaign::show))
        .route("/campaigns/{id}/waves", post(campaign::new_wave))
        .route("/campaigns/{id}/status", post(campaign::set_status))
        .route("/lists/{id}", get(campaign::list))
        .route("/waves/{id}", get(pages::wave))
        .route("/waves/{id}/{action}", post(pages::wave_action))
        .route("/ops/quarantine", get(ops::quarantine))
        .route("/ops/quarantine/{id}", get(ops::held))
        .route("/ops/quarantine/{id}/replay", post(ops::replay))
        .route("/ops/suppression", get(ops::suppression))
        .route("/signin", get(session::sign_in_page).post(session::sign_in))
        .route("/signout", post(session::sign_out))
        .route("/console.css", get(stylesheet))
        .route("/console.js", get(script))
        .layer(axum::middleware::from_fn(session::remember_lang))
        .route_layer(axum::middleware::from_fn_with_state(state, session::audit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse() {
        for (name, _) in TEMPLATES {
            env().get_template(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn error_pages_escape_what_they_show() {
        let r = page_error(i18n::Lang::En, StatusCode::FORBIDDEN, "<script>");
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
}
