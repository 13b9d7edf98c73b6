//! The admin API's list parameters: any query string as `?view=…&sort=…&page=…&limit=…&
//! group_by=…&<field>[_gt|_ge|_lt|_le|_ne|_null]=…`, read as every entity set reads it
//! (`list_params`, then each filter with its value's type, the sort, the view with its
//! parameters and the group-by column). Schemathesis covers the same over HTTP, with the
//! database behind it; this target explores the readers by coverage.
#![no_main]
use inflow::crm::entities::*;
use inflow::store::api as q;
use libfuzzer_sys::fuzz_target;

fn read_as<R: Record>(p: &inflow::http::api::ListParams) {
    let tz = chrono_tz::Europe::Moscow;
    for (k, v) in &p.filters {
        let _ = q::filter::<R>(k, v, tz);
    }
    if let Some(s) = &p.sort {
        let _ = q::sort::<R>(s);
    }
    if let Some(g) = &p.group_by {
        let _ = q::field::<R>(g);
    }
    let kinds = vec!["task".to_string(), "phonecall".to_string()];
    let ctx = q::ViewCtx {
        me: uuid::Uuid::nil(),
        overdue_kinds: &kinds,
        now: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
        tz,
        stale_lead_days: 30,
        params: &p.extra,
    };
    let _ = q::view(R::TABLE, p.view.as_deref().unwrap_or("all"), &ctx);
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    let Ok(p) = inflow::http::api::list_params(Some(raw)) else { return };
    read_as::<SystemUser>(&p);
    read_as::<Account>(&p);
    read_as::<Contact>(&p);
    read_as::<Lead>(&p);
    read_as::<Opportunity>(&p);
    read_as::<MarketingList>(&p);
    read_as::<Campaign>(&p);
    read_as::<CampaignActivity>(&p);
    read_as::<BulkOperation>(&p);
    read_as::<CampaignResponse>(&p);
    read_as::<Activity>(&p);
});
