//! HubSpot's CRM data: deals, notes, tasks, property definitions, owners and the
//! default pipeline, in the CRM v3 object shape (reference §3.1).

use std::borrow::Cow;
use std::collections::BTreeMap;

use jiff::Timestamp;
use serde_json::{Map, Value, json};

/// Association type ids (HUBSPOT_DEFINED) from HubSpot's SDK enum (reference §3.8).
pub const NOTE_TO_DEAL: i64 = 214;
/// Task → deal.
pub const TASK_TO_DEAL: i64 = 216;
/// Deal → company, primary (reference §3.8).
pub const DEAL_TO_COMPANY_PRIMARY: i64 = 5;
/// Deal → company, unlabeled.
pub const DEAL_TO_COMPANY: i64 = 341;
/// Company → deal, primary.
pub const COMPANY_TO_DEAL_PRIMARY: i64 = 6;
/// Company → deal, unlabeled.
pub const COMPANY_TO_DEAL: i64 = 342;

/// HubSpot's default company properties clients may set (CRM "Companies" object).
pub const COMPANY_PROPERTIES: &[&str] = &[
    "name",
    "domain",
    "website",
    "industry",
    "phone",
    "address",
    "address2",
    "city",
    "state",
    "zip",
    "country",
    "description",
    "numberofemployees",
    "annualrevenue",
    "hubspot_owner_id",
];

/// A CRM object (deal, note, task).
#[derive(Debug, Clone)]
pub struct Object {
    /// Numeric id, as text.
    pub id: String,
    /// Property values (text).
    pub properties: BTreeMap<String, String>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// Associated object ids by object type (`notes`, `tasks`, `deals`).
    pub associations: BTreeMap<String, Vec<String>>,
}

/// A property definition.
#[derive(Debug, Clone)]
pub struct Property {
    /// Internal name.
    pub name: String,
    /// The definition as the API returns it.
    pub definition: Value,
    /// Whether clients may write it.
    pub read_only: bool,
}

/// The sandbox's HubSpot account.
#[derive(Debug)]
pub struct Store {
    /// Deals by id.
    pub deals: BTreeMap<String, Object>,
    /// Notes by id.
    pub notes: BTreeMap<String, Object>,
    /// Tasks by id.
    pub tasks: BTreeMap<String, Object>,
    /// Companies by id.
    pub companies: BTreeMap<String, Object>,
    /// Each deal's primary company (deal id → company id); every company of a deal is
    /// also in the deal's `associations["companies"]`.
    pub primary_company: BTreeMap<String, String>,
    /// Deal property definitions by name.
    pub deal_properties: BTreeMap<String, Property>,
    /// Owners by id.
    pub owners: BTreeMap<String, Value>,
    next_id: u64,
}

/// The default deal pipeline's stages: id, label, probability (reference §6).
pub const DEFAULT_STAGES: &[(&str, &str, &str)] = &[
    ("appointmentscheduled", "Appointment scheduled", "0.2"),
    ("qualifiedtobuy", "Qualified to buy", "0.4"),
    ("presentationscheduled", "Presentation scheduled", "0.6"),
    ("decisionmakerboughtin", "Decision maker bought in", "0.8"),
    ("contractsent", "Contract sent", "0.9"),
    ("closedwon", "Closed won", "1.0"),
    ("closedlost", "Closed lost", "0.0"),
];

/// Note and task properties clients may set.
pub const NOTE_PROPERTIES: &[&str] = &[
    "hs_timestamp",
    "hs_note_body",
    "hubspot_owner_id",
    "hs_attachment_ids",
];
/// Task properties clients may set.
pub const TASK_PROPERTIES: &[&str] = &[
    "hs_timestamp",
    "hs_task_subject",
    "hs_task_body",
    "hs_task_status",
    "hs_task_priority",
    "hs_task_type",
    "hs_task_reminders",
    "hubspot_owner_id",
];

impl Default for Store {
    fn default() -> Self {
        let mut store = Store {
            deals: BTreeMap::new(),
            notes: BTreeMap::new(),
            tasks: BTreeMap::new(),
            companies: BTreeMap::new(),
            primary_company: BTreeMap::new(),
            deal_properties: BTreeMap::new(),
            owners: BTreeMap::new(),
            next_id: 0,
        };
        for (name, label, kind, field, read_only) in [
            ("dealname", "Deal Name", "string", "text", false),
            ("amount", "Amount", "number", "number", false),
            ("closedate", "Close Date", "datetime", "date", false),
            ("dealstage", "Deal Stage", "enumeration", "radio", false),
            ("pipeline", "Pipeline", "enumeration", "select", false),
            (
                "hubspot_owner_id",
                "Deal owner",
                "enumeration",
                "select",
                false,
            ),
            (
                "deal_currency_code",
                "Currency",
                "enumeration",
                "select",
                false,
            ),
            (
                "description",
                "Deal Description",
                "string",
                "textarea",
                false,
            ),
            ("dealtype", "Deal Type", "enumeration", "radio", false),
            ("createdate", "Create Date", "datetime", "date", true),
            (
                "hs_lastmodifieddate",
                "Last Modified Date",
                "datetime",
                "date",
                true,
            ),
            ("hs_object_id", "Record ID", "number", "number", true),
        ] {
            store.deal_properties.insert(
                name.into(),
                property(name, label, kind, field, "dealinformation", read_only, true),
            );
        }
        store
    }
}

/// A property definition in the API's shape.
pub fn property(
    name: &str,
    label: &str,
    kind: &str,
    field: &str,
    group: &str,
    read_only: bool,
    hubspot_defined: bool,
) -> Property {
    Property {
        name: name.into(),
        read_only,
        definition: json!({
            "name": name, "label": label, "type": kind, "fieldType": field, "groupName": group,
            "description": "", "options": [], "displayOrder": -1, "calculated": false, "externalOptions": false,
            "hasUniqueValue": false, "hidden": false, "hubspotDefined": hubspot_defined, "formField": true,
            "modificationMetadata": { "archivable": !hubspot_defined, "readOnlyDefinition": hubspot_defined, "readOnlyValue": read_only },
            "createdAt": "2026-01-01T00:00:00.000Z", "updatedAt": "2026-01-01T00:00:00.000Z", "archived": false,
        }),
    }
}

/// Milliseconds-precision UTC time, as HubSpot writes it (`…T16:50:06.678Z`).
pub fn iso(t: Timestamp) -> String {
    let ms = t.as_millisecond();
    let whole = Timestamp::from_millisecond(ms - ms.rem_euclid(1000)).unwrap_or(t);
    let text = whole.to_string();
    format!("{}.{:03}Z", text.trim_end_matches('Z'), ms.rem_euclid(1000))
}

impl Store {
    /// A new numeric id above 2^32, so clients never fit ids in 32 bits.
    pub fn next_id(&mut self) -> String {
        self.next_id += 1;
        (40_000_000_000 + self.next_id).to_string()
    }

    /// Creates an object in `kind` (`deals`, `notes`, `tasks`).
    pub fn insert(&mut self, kind: &str, properties: BTreeMap<String, String>) -> Object {
        let id = self.next_id();
        let now = Timestamp::now();
        let object = Object {
            id: id.clone(),
            properties,
            created_at: now,
            updated_at: now,
            associations: BTreeMap::new(),
        };
        self.table(kind).insert(id, object.clone());
        object
    }

    /// The table for an object type.
    pub fn table(&mut self, kind: &str) -> &mut BTreeMap<String, Object> {
        match kind {
            "notes" => &mut self.notes,
            "tasks" => &mut self.tasks,
            "companies" => &mut self.companies,
            _ => &mut self.deals,
        }
    }

    /// Associates a company with a deal, as its primary company when `primary`
    /// (both directions, as HubSpot keeps them).
    pub fn associate_company(&mut self, deal_id: &str, company_id: &str, primary: bool) -> bool {
        if !self.companies.contains_key(company_id) || !self.deals.contains_key(deal_id) {
            return false;
        }
        let deal = self.deals.get_mut(deal_id).expect("checked above");
        let ids = deal.associations.entry("companies".into()).or_default();
        if !ids.iter().any(|i| i == company_id) {
            ids.push(company_id.to_string());
        }
        let company = self.companies.get_mut(company_id).expect("checked above");
        let ids = company.associations.entry("deals".into()).or_default();
        if !ids.iter().any(|i| i == deal_id) {
            ids.push(deal_id.to_string());
        }
        if primary || !self.primary_company.contains_key(deal_id) {
            self.primary_company
                .insert(deal_id.to_string(), company_id.to_string());
        }
        true
    }

    /// Adds an owner (control API, demo data).
    pub fn add_owner(&mut self, id: &str, email: &str, first: &str, last: &str) {
        self.owners.insert(
            id.into(),
            json!({ "id": id, "email": email, "firstName": first, "lastName": last, "userId": id.parse::<u64>().unwrap_or(0) + 1,
                    "type": "PERSON", "createdAt": "2026-01-01T00:00:00.000Z", "updatedAt": "2026-01-01T00:00:00.000Z", "archived": false, "teams": [] }),
        );
    }
}

impl Object {
    /// The object in the API's shape with the requested properties (`null` for
    /// requested but unset ones; reference §3.1), or the given defaults.
    pub fn to_json(&self, requested: &[String], kind: &str) -> Value {
        let mut props = Map::new();
        let names: Vec<String> = if requested.is_empty() {
            let defaults: &[&str] = match kind {
                "deals" => &[
                    "dealname",
                    "amount",
                    "closedate",
                    "pipeline",
                    "dealstage",
                    "createdate",
                    "hs_lastmodifieddate",
                    "hs_object_id",
                ],
                "companies" => &[
                    "name",
                    "domain",
                    "createdate",
                    "hs_lastmodifieddate",
                    "hs_object_id",
                ],
                "notes" => &[
                    "hs_timestamp",
                    "hs_note_body",
                    "createdate",
                    "hs_lastmodifieddate",
                    "hs_object_id",
                ],
                _ => &[
                    "hs_timestamp",
                    "hs_task_subject",
                    "hs_task_status",
                    "createdate",
                    "hs_lastmodifieddate",
                    "hs_object_id",
                ],
            };
            defaults.iter().map(|s| s.to_string()).collect()
        } else {
            requested.to_vec()
        };
        for name in names {
            props.insert(
                name.clone(),
                self.value(&name).map_or(Value::Null, Value::String),
            );
        }
        json!({
            "id": self.id,
            "properties": props,
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.updated_at),
            "archived": false,
        })
    }

    /// A property's value, including the ones HubSpot maintains itself.
    pub fn value(&self, name: &str) -> Option<String> {
        self.value_ref(name).map(Cow::into_owned)
    }

    /// [`Object::value`] without copying a stored value (searches look at every
    /// deal).
    pub fn value_ref(&self, name: &str) -> Option<Cow<'_, str>> {
        match name {
            "hs_object_id" => Some(Cow::Borrowed(&self.id)),
            "createdate" => Some(Cow::Owned(iso(self.created_at))),
            "hs_lastmodifieddate" => Some(Cow::Owned(iso(self.updated_at))),
            _ => self
                .properties
                .get(name)
                .filter(|v| !v.is_empty())
                .map(|v| Cow::Borrowed(v.as_str())),
        }
    }
}

/// What HubSpot's timeline shows of an HTML note or task body: tags gone, entities
/// decoded, white space (line breaks included) folded to one space as HTML folds it,
/// and line breaks only where the markup makes them (`<br>`, paragraphs, list items,
/// which show as `- `). A body sent as plain text with newlines shows on one line.
pub fn shown(html: &str) -> String {
    let mut out = String::new();
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        push_text(&mut out, &rest[..open]);
        let Some(close) = rest[open..].find('>') else {
            push_text(&mut out, &rest[open..]);
            rest = "";
            break;
        };
        let tag = rest[open + 1..open + close]
            .trim()
            .trim_end_matches('/')
            .to_ascii_lowercase();
        let name = tag.split_whitespace().next().unwrap_or_default();
        match name {
            "br" | "/p" | "/div" | "/li" | "/ul" | "/ol" | "/h1" | "/h2" | "/h3" => {
                newline(&mut out)
            }
            "li" => {
                newline(&mut out);
                out.push_str("- ");
            }
            _ => {}
        }
        rest = &rest[open + close + 1..];
    }
    push_text(&mut out, rest);
    out.lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

fn newline(out: &mut String) {
    while out.ends_with(' ') {
        out.pop();
    }
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
}

fn push_text(out: &mut String, text: &str) {
    let decoded = text
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&");
    for c in decoded.chars() {
        if c.is_whitespace() {
            if !out.is_empty() && !out.ends_with(' ') && !out.ends_with('\n') {
                out.push(' ');
            }
        } else {
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::shown;

    #[test]
    fn html_shows_its_breaks_lists_and_folds_plain_newlines() {
        assert_eq!(
            shown("<p>Synced</p>\n<ul>\n<li>Stage: A → B</li>\n<li>Amount &amp; more</li>\n</ul>"),
            "Synced\n- Stage: A → B\n- Amount & more"
        );
        assert_eq!(
            shown("<p><strong>Engagement:</strong> e<br />\nnext</p>"),
            "Engagement: e\nnext"
        );
        assert_eq!(shown("line one\nline two"), "line one line two");
    }
}
