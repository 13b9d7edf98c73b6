//! The OpenAPI 3.0 document of `/api/v1`, built from the route table.

use super::*;

// OpenAPI

pub(super) fn col_schema(ty: ColType) -> J {
    match ty {
        ColType::Text => json!({"type": "string", "nullable": true}),
        ColType::Uuid => json!({"type": "string", "format": "uuid", "nullable": true}),
        ColType::Int => json!({"type": "integer", "nullable": true}),
        ColType::Bool => json!({"type": "boolean", "nullable": true}),
        ColType::Money => json!({"type": "number", "nullable": true}),
        ColType::Instant => json!({"type": "string", "format": "date-time", "nullable": true}),
        ColType::Date => json!({"type": "string", "format": "date", "nullable": true}),
        ColType::Json => json!({"nullable": true}),
    }
}

pub(super) fn record_schema(cols: &[crate::crm::entities::Col]) -> J {
    let props: serde_json::Map<String, J> = cols.iter().map(|c| (c.name.to_string(), col_schema(c.ty))).collect();
    json!({"type": "object", "properties": props})
}

pub(super) fn writable_schema(cols: &[crate::crm::entities::Col], key: &str, table: &str, create: bool) -> J {
    let mut props: serde_json::Map<String, J> = cols
        .iter()
        .filter(|c| c.name != key && !SERVER_FIELDS.contains(&c.name) && !read_only(table, create).contains(&c.name))
        .map(|c| (c.name.to_string(), col_schema(c.ty)))
        .collect();
    let text = json!({"type": "string", "minLength": 1, "pattern": "\\S"});
    let required: &[&str] = match table {
        "lead" => &["subject", "lastname"],
        "contact" => &["lastname"],
        "account" => &["name"],
        "campaign" => &["name"],
        "list" => &["listname", "createdfromcode"],
        "campaignactivity" => &["regardingobjectid", "subject"],
        "activity" => &["activitytypecode"],
        "opportunity" => &["name", "customerid", "customeridtype"],
        _ => &[],
    };
    if create {
        for r in required {
            props.insert(r.to_string(), text.clone());
        }
    }
    match table {
        "list" if create => {
            props.insert("createdfromcode".into(), json!({"type": "integer", "enum": [1, 2, 4]}));
        }
        "activity" => {
            props.insert(
                "activitytypecode".into(),
                json!({"type": "string", "enum": ["task", "phonecall", "appointment", "letter", "fax"]}),
            );
        }
        "lead" => {
            props.insert("leadqualitycode".into(), json!({"type": "integer", "enum": [1, 2, 3]}));
        }
        "opportunity" => {
            if create {
                props.insert("customerid".into(), json!({"type": "string", "format": "uuid"}));
                props.insert("customeridtype".into(), json!({"type": "string", "enum": ["account", "contact"]}));
            }
            props.insert("salesstage".into(), json!({"type": "integer", "enum": [0, 1, 2, 3], "nullable": true}));
            props.insert(
                "closeprobability".into(),
                json!({"type": "integer", "minimum": 0, "maximum": 100, "nullable": true}),
            );
            props.insert("opportunityratingcode".into(), json!({"type": "integer", "enum": [1, 2, 3]}));
        }
        _ => {}
    }
    if props.contains_key("ownerid") {
        props.insert(
            "ownerid".into(),
            json!({"type": "string", "format": "uuid", "description": "default: the caller's user"}),
        );
    }
    let mut schema = json!({"type": "object", "properties": props, "additionalProperties": false});
    if create && !required.is_empty() {
        schema["required"] = json!(required);
    }
    if !create {
        schema["properties"]["versionnumber"] =
            json!({"type": "integer", "description": "optimistic concurrency: the version read"});
    }
    schema
}

pub(super) fn named_body(name: &str) -> J {
    let uuid = json!({"type": "string", "format": "uuid"});
    let ostr = json!({"type": "string", "nullable": true});
    match name {
        "Empty" => json!({"type": "object", "additionalProperties": false}),
        "Disqualify" => {
            json!({"type": "object", "additionalProperties": false, "properties": {"statuscode": {"type": "integer",
                "enum": [4, 5, 6, 7], "nullable": true}, "reason": ostr}})
        }
        "QualifyParams" => json!({"type": "object", "additionalProperties": false,
            "required": ["create_account", "create_contact", "create_opportunity"],
            "properties": {"create_account": {"type": "boolean"}, "create_contact": {"type": "boolean"},
                "create_opportunity": {"type": "boolean"},
                "opportunity_currency_id": ostr, "opportunity_customer": {"type": "object", "nullable": true,
                    "required": ["kind", "id"], "properties": {"kind": {"type": "string", "enum": ["account",
                        "contact"]}, "id": uuid}},
                "source_campaign_id": {"type": "string", "format": "uuid", "nullable": true},
                    "status": {"type": "integer", "nullable": true}}}),
        "ConvertOption" => json!({"oneOf": [
            {"type": "object", "additionalProperties": false, "required": ["option"],
                "properties": {"option": {"type": "string", "enum": ["new_lead"]}}},
            {"type": "object", "additionalProperties": false, "required": ["option", "lead_id"],
                "properties": {"option": {"type": "string", "enum": ["existing_lead"]}, "lead_id": uuid,
                    "reactivate": {"type": "boolean"}}},
            {"type": "object", "additionalProperties": false, "required": ["option", "create_account",
                "create_contact"], "properties": {"option": {"type": "string", "enum": ["new_customer"]},
                    "create_account": {"type": "boolean"}, "create_contact": {"type": "boolean"},
                        "create_opportunity": {"type": "boolean"}}},
            {"type": "object", "additionalProperties": false, "required": ["option"],
                "properties": {"option": {"type": "string", "enum": ["close"]}, "cancel": {"type": "boolean"}}}]}),
        "Schedule" => {
            json!({"type": "object", "additionalProperties": false, "required": ["subject", "text"], "properties": {
            "start": ostr, "timezone": ostr, "subject": {"type": "string"}, "text": {"type": "string"},
                "html": ostr, "from": ostr, "from_name": ostr, "reply_to": ostr,
            "rate_per_minute": {"type": "integer", "minimum": 0, "nullable": true},
                "skip_responders_of": {"type": "string", "format": "uuid", "nullable": true}}})
        }
        "CampaignStatus" => {
            json!({"type": "object", "additionalProperties": false, "required": ["statuscode"],
                "properties": {"statuscode": {"type": "integer", "enum": [0, 1, 2, 3, 4, 5]}}})
        }
        "TestSend" => {
            json!({"type": "object", "additionalProperties": false, "required": ["to"],
                "properties": {"to": {"type": "string"}, "vars": {"type": "object"}}})
        }
        "Members" => {
            json!({"type": "object", "additionalProperties": false, "required": ["members"],
                "properties": {"members": {"type": "array", "items": uuid}}})
        }
        other => work::named_body(other).or_else(|| super::lines::named_body(other)).unwrap_or_else(|| json!({})),
    }
}

/// The OpenAPI 3.0 document of `/api/v1`, built from the route table.
pub fn openapi() -> J {
    let mut paths = serde_json::Map::new();
    let error = json!({"$ref": "#/components/schemas/Error"});
    let all = table();
    let op_id = |d: &RouteDef| {
        format!(
            "{}_{}",
            d.method.as_str().to_lowercase(),
            d.path.trim_start_matches("/api/v1/").replace(['/', '-', '.'], "_").replace(['{', '}'], "")
        )
    };
    for d in &all {
        let mut op = serde_json::Map::new();
        op.insert("operationId".into(), json!(op_id(d)));
        op.insert("summary".into(), json!(d.summary));
        op.insert("security".into(), json!([{"bearer": []}]));
        let mut params = Vec::new();
        if d.path.contains("{id}") {
            params.push(
                json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}),
            );
        }
        let paged = matches!(d.reply, ReplyDoc::Page);
        if paged {
            params.push(json!({"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1,
                "maximum": 1_000_000}}));
            params.push(json!({"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                "maximum": q::MAX_LIMIT}}));
        }
        if d.list {
            let (_, cols, table) = d.set.expect("list routes have a set");
            let names: Vec<&str> = cols.iter().map(|c| c.name).collect();
            let sorts: Vec<String> = names.iter().flat_map(|n| [n.to_string(), format!("-{n}")]).collect();
            params.push(json!({"name": "view", "in": "query", "schema": {"type": "string", "enum": q::views(table)}}));
            params.push(json!({"name": "sort", "in": "query", "schema": {"type": "string", "enum": sorts}}));
            params.push(json!({"name": "group_by", "in": "query", "schema": {"type": "string", "enum": names}}));
            params.push(json!({"name": "id", "in": "query", "description": "view by-regarding: the regarding \
                record", "schema": {"type": "string", "format": "uuid"}}));
            params.push(json!({"name": "campaign", "in": "query", "description": "view by-campaign: the \
                campaign", "schema": {"type": "string", "format": "uuid"}}));
            params.push(json!({"name": "all_states", "in": "query", "description": "view older-than-6-months: \
                every state", "schema": {"type": "boolean"}}));
            params.push(json!({"name": "days", "in": "query", "description": "view creation-rate: days \
                back", "schema": {"type": "integer", "minimum": 1, "maximum": 366}}));
        }
        if d.method == Method::POST && (matches!(d.body, BodyDoc::Record) || d.path.ends_with("/convert")) {
            params.push(
                json!({"name": "duplicates", "in": "query", "schema": {"type": "string", "enum": ["check", "allow"]}}),
            );
        }
        if !params.is_empty() {
            op.insert("parameters".into(), J::Array(params));
        }
        let body = match d.body {
            BodyDoc::None => None,
            BodyDoc::Record => {
                d.set.map(|(_, cols, table)| writable_schema(cols, &crate_key(table), table, d.method == Method::POST))
            }
            BodyDoc::Named(n) => Some(named_body(n)),
        };
        if let Some(b) = body {
            // A body with nothing required may be left out (an action with no options, a
            // PATCH that changes nothing): the server reads no body as `{}`.
            let required =
                b.get("required").and_then(J::as_array).is_some_and(|r| !r.is_empty()) || b.get("oneOf").is_some();
            op.insert(
                "requestBody".into(),
                json!({"required": required, "content": {"application/json": {"schema": b}}}),
            );
        }
        let ok = match (d.reply, d.set) {
            (ReplyDoc::Record, Some((_, cols, _))) => record_schema(cols),
            (ReplyDoc::Page, Some((_, cols, _))) => {
                json!({"type": "object", "properties": {"items": {"type": "array", "items": record_schema(cols)},
                    "total": {"type": "integer"}, "page": {"type": "integer"}, "limit": {"type": "integer"},
                        "groups": {"type": "array", "items": {"type": "object",
                            "properties": {"key": {"nullable": true}, "label": {"type": "string", "nullable": true},
                                "count": {"type": "integer"}}}}, "totals": {"type": "object"}}})
            }
            (ReplyDoc::List, Some((_, cols, _))) => {
                json!({"type": "object", "required": ["items", "total"], "properties": {"items": {"type": "array",
                    "items": record_schema(cols)}, "total": {"type": "integer"}}})
            }
            (ReplyDoc::Page, None) => {
                json!({"type": "object", "properties": {"items": {"type": "array", "items": {"type": "object"}},
                    "total": {"type": "integer"}, "page": {"type": "integer"}, "limit": {"type": "integer"}},
                        "required": ["items", "total"]})
            }
            _ => json!({"type": "object"}),
        };
        let mut responses = serde_json::Map::new();
        let mut success = json!({"description": "OK", "content": {"application/json": {"schema": ok}}});
        // A created record's id feeds the routes on that record (OpenAPI links).
        if let (true, BodyDoc::Record, Some((set, _, table))) = (d.method == Method::POST, d.body, d.set) {
            let prefix = format!("/api/v1/{set}/{{id}}");
            let links: serde_json::Map<String, J> = all
                .iter()
                .filter(|o| o.path.starts_with(&prefix))
                .map(|o| {
                    (
                        op_id(o),
                        json!({"operationId": op_id(o),
                    "parameters": {"id": format!("$response.body#/{}", crate_key(table))}}),
                    )
                })
                .collect();
            success["links"] = J::Object(links);
        }
        responses.insert(d.status.to_string(), success);
        for (code, what) in [
            ("400", "Bad request"),
            ("401", "Missing or wrong token"),
            ("403", "The token's role may not do this"),
            ("404", "Not found"),
            ("409", "Conflicts with the record's state or a duplicate"),
            ("413", "Body too large"),
            ("422", "Refused by a rule"),
            ("502", "The relay refused the test message"),
            ("503", "Database unavailable"),
        ] {
            responses
                .insert(code.into(), json!({"description": what, "content": {"application/json": {"schema": error}}}));
        }
        op.insert("responses".into(), J::Object(responses));
        let entry = paths.entry(d.path.clone()).or_insert_with(|| json!({}));
        entry[d.method.as_str().to_lowercase()] = J::Object(op);
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "inflow admin \
            API", "version": env!("CARGO_PKG_VERSION"), "description": "CRM entities, views (DOMAIN §7) and \
            actions (§3) of the inflow daemon."},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": {"type": "object", "required": ["error"],
                "properties": {"error": {"type": "object", "required": ["code", "message"],
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                        "candidates": {"type": "array", "items": {"type": "object"}}}}}}}
        }
    })
}

/// The key column of a table (the shared activity table's is `activityid`).
pub(super) fn crate_key(table: &str) -> String {
    table.parse::<EntityKind>().map(|k| k.table().1).unwrap_or("activityid").to_string()
}
