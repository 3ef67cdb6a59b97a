//! Events: what starts a pack, built from the real payload shapes. A HubSpot webhook
//! event (one object of the batch HubSpot POSTs; `objectId` is a number, property
//! values are strings), an EventBridge event from `aws.partnercentral-selling`, or a
//! scheduled run of one pack.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A HubSpot webhook.
    Hubspot,
    /// A Partner Central EventBridge event.
    Partnercentral,
    /// A pack's schedule.
    Schedule,
}

/// One event, normalised from its wire shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// A stable id for deduplication: the same delivery always gives the same id.
    pub id: String,
    /// Where it came from.
    pub source: Source,
    /// `deal.propertyChange`, `Opportunity Updated`, `schedule`.
    #[serde(rename = "type")]
    pub kind: String,
    /// When it happened (RFC 3339), if the payload says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<String>,
    /// The HubSpot deal, when known from the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deal_id: Option<String>,
    /// The Partner Central opportunity, when known from the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opportunity_id: Option<String>,
    /// The HubSpot company, for `company.*` events: the runtime runs the packs it
    /// starts for each deal of the company.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_id: Option<String>,
    /// For `deal.propertyChange`: the property and its new value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property: Option<PropertyChange>,
    /// HubSpot's `changeSource` (`CRM_UI`, `INTEGRATION`…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_source: Option<String>,
    /// HubSpot's `sourceId` (`userId:…`, or an app id for integration writes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_id: Option<String>,
    /// For scheduled runs: the pack the run belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pack: Option<String>,
    /// For scheduled runs: what the poller's listing gave the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled: Option<ScheduledRun>,
    /// The property changes of the earlier events this run also covers (a batch is
    /// planned on its newest event, with a fresh read of the deal), so that what the
    /// run says about "the edit that changed it" holds for every edit of the batch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also_changed: Vec<PropertyChange>,
    /// The payload as received.
    #[serde(default)]
    pub payload: Value,
}

/// What a scheduled run may read from Partner Central (`schedule.reads`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PartnerCentralRead {
    /// GetOpportunity.
    Opportunity,
    /// GetAwsOpportunitySummary.
    AwsSummary,
}

impl PartnerCentralRead {
    /// The context member it fills, as rules name it.
    pub fn as_str(self) -> &'static str {
        match self {
            PartnerCentralRead::Opportunity => "opportunity",
            PartnerCentralRead::AwsSummary => "aws_summary",
        }
    }
}

/// What the poller's listing gave a scheduled run: the deal as CRM search read it,
/// and when, and for a `schedule.reads` poll what the run reads of Partner Central.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduledRun {
    /// When the listing read the deal.
    pub listed_at: Timestamp,
    /// The deal, with the properties the listing asked for.
    pub deal: crate::DealSnapshot,
    /// The Partner Central reads the run makes, when it makes only these of what its
    /// pack needs (`schedule.reads`); `None`: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reads: Option<Vec<PartnerCentralRead>>,
}

/// A property change carried by a HubSpot event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PropertyChange {
    /// The property's internal name.
    pub name: String,
    /// The new value, as HubSpot sends it (always text).
    pub value: Option<String>,
}

/// Why a payload is not an event pcsync understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// A required member is absent or of the wrong type.
    #[error("{kind} event: `{field}` is missing or not {expected}")]
    Field {
        /// Which kind of event.
        kind: &'static str,
        /// The member.
        field: &'static str,
        /// What it should be.
        expected: &'static str,
    },
    /// The text is not JSON that reads (as the worker would read it).
    #[error("the event does not read as JSON: {0}")]
    Json(String),
    /// The value is not any known event shape.
    #[error(
        "not an event: expected a HubSpot webhook event (with `subscriptionType`), an EventBridge event (with `detail-type`), or `schedule: PACK`"
    )]
    Unknown,
}

impl Event {
    /// For a scheduled run that reads only part of what its pack needs
    /// (`schedule.reads`), the Partner Central reads it makes. `None` for every other
    /// event: it reads all.
    pub fn scheduled_reads(&self) -> Option<&[PartnerCentralRead]> {
        if self.source != Source::Schedule {
            return None;
        }
        self.scheduled.as_ref()?.reads.as_deref()
    }

    /// The property changes this run covers: its event's and the earlier ones of
    /// its batch ([`Event::also_changed`]).
    pub fn changed_properties(&self) -> impl Iterator<Item = &PropertyChange> {
        self.property.iter().chain(&self.also_changed)
    }

    /// Whether this event's run leaves `member` (`opportunity`, `aws_summary`) unread
    /// although its pack needs it ([`Event::scheduled_reads`]).
    pub fn leaves_unread(&self, member: &str) -> bool {
        matches!(member, "opportunity" | "aws_summary")
            && self
                .scheduled_reads()
                .is_some_and(|reads| !reads.iter().any(|r| r.as_str() == member))
    }

    /// Reads any supported shape: `{hubspot: {...}}`, `{eventbridge: {...}}`,
    /// `{schedule: pack, deal_id?, opportunity_id?}`, `{recorded: {...}}` (an event
    /// as pcsync stored it, which `pcsync replay --export` writes), a bare HubSpot
    /// event or webhook body (an array; its first event), or a bare EventBridge
    /// event.
    pub fn from_value(value: &Value, now: Timestamp) -> Result<Event, EventError> {
        if let Some(r) = value.get("recorded") {
            return serde_json::from_value(r.clone())
                .map_err(|e| EventError::Json(format!("a recorded event: {e}")));
        }
        if let Some(h) = value.get("hubspot") {
            return Event::from_hubspot(h);
        }
        if let Some(e) = value.get("eventbridge") {
            return Event::from_eventbridge(e);
        }
        if let Some(pack) = value.get("schedule").and_then(Value::as_str) {
            return Ok(Event::schedule(
                pack,
                value.get("deal_id").and_then(id_text),
                value
                    .get("opportunity_id")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                now,
            ));
        }
        if let Some(first) = value.as_array().and_then(|a| a.first()) {
            return Event::from_value(first, now);
        }
        if value.get("subscriptionType").is_some() || value.get("eventType").is_some() {
            return Event::from_hubspot(value);
        }
        if value.get("detail-type").is_some() {
            return Event::from_eventbridge(value);
        }
        Err(EventError::Unknown)
    }

    /// One event of a HubSpot webhook batch.
    pub fn from_hubspot(v: &Value) -> Result<Event, EventError> {
        let mut event = Event::hubspot_fields(v)?;
        event.payload = v.clone();
        Ok(event)
    }

    /// [`Event::from_hubspot`], keeping `v` as the payload without copying it.
    pub fn from_hubspot_owned(v: Value) -> Result<Event, EventError> {
        let mut event = Event::hubspot_fields(&v)?;
        event.payload = v;
        Ok(event)
    }

    /// A HubSpot event's fields, with an empty payload.
    fn hubspot_fields(v: &Value) -> Result<Event, EventError> {
        Event::hubspot_fields_of(|k| v.get(k))
    }

    /// A HubSpot event's fields from its JSON text, with an empty payload, reading
    /// only the members they come from instead of building the whole tree (ingest
    /// reads tens of thousands a second). The same fields as
    /// [`Event::from_hubspot`] gives; text that is not an object of distinct
    /// members is read the long way, with the same outcome. Text read here also
    /// reads whole (every value in it is checked), as the worker will read it.
    pub fn hubspot_fields_from_text(text: &str) -> Result<Event, EventError> {
        match serde_json::from_str::<HubspotMembers>(text) {
            Ok(m) => Event::hubspot_fields_of(|k| m.get(k)),
            Err(_) => match serde_json::from_str::<Value>(text) {
                Ok(v) => Event::hubspot_fields(&v),
                Err(e) => Err(EventError::Json(e.to_string())),
            },
        }
    }

    /// A HubSpot event's fields from a lookup of its members.
    fn hubspot_fields_of<'v>(get: impl Fn(&str) -> Option<&'v Value>) -> Result<Event, EventError> {
        let v = Getter(get);
        let field = |field, expected| EventError::Field {
            kind: "HubSpot",
            field,
            expected,
        };
        let kind = v
            .get("subscriptionType")
            .or_else(|| v.get("eventType"))
            .and_then(Value::as_str)
            .ok_or(field("subscriptionType", "a string"))?
            .to_string();
        // The id goes into HubSpot URL paths: only digits are an id.
        let object_id = v
            .get("objectId")
            .and_then(id_text)
            .filter(|id| (1..=20).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_digit()))
            .ok_or(field("objectId", "a number"))?;
        let occurred_ms = v.get("occurredAt").and_then(Value::as_i64);
        let occurred_at = occurred_ms
            .and_then(|ms| Timestamp::from_millisecond(ms).ok())
            .map(|t| t.to_string());
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let property = text("propertyName").map(|name| PropertyChange {
            name,
            value: text("propertyValue"),
        });
        if kind.ends_with(".propertyChange") && property.is_none() {
            return Err(field("propertyName", "a string"));
        }
        let event_id = v.get("eventId").map(Value::to_string).unwrap_or_default();
        let portal = v.get("portalId").map(Value::to_string).unwrap_or_default();
        // HubSpot says eventId "is not guaranteed to be unique": the id combines it
        // with what identifies the change itself.
        let id = format!(
            "hubspot:{portal}:{event_id}:{kind}:{object_id}:{}:{}",
            property.as_ref().map_or("", |p| p.name.as_str()),
            occurred_ms.unwrap_or_default()
        );
        let (deal_id, company_id) = if kind.starts_with("company.") {
            (None, Some(object_id))
        } else {
            (Some(object_id), None)
        };
        Ok(Event {
            id,
            source: Source::Hubspot,
            kind,
            occurred_at,
            deal_id,
            opportunity_id: None,
            company_id,
            property,
            change_source: text("changeSource"),
            source_id: text("sourceId"),
            pack: None,
            scheduled: None,
            also_changed: Vec::new(),
            payload: Value::Null,
        })
    }

    /// An EventBridge event from `aws.partnercentral-selling`.
    pub fn from_eventbridge(v: &Value) -> Result<Event, EventError> {
        let mut event = Event::eventbridge_fields(v)?;
        event.payload = v.clone();
        Ok(event)
    }

    /// An EventBridge event's fields, with an empty payload.
    fn eventbridge_fields(v: &Value) -> Result<Event, EventError> {
        let field = |field, expected| EventError::Field {
            kind: "EventBridge",
            field,
            expected,
        };
        let kind = v
            .get("detail-type")
            .and_then(Value::as_str)
            .ok_or(field("detail-type", "a string"))?;
        let id = v
            .get("id")
            .and_then(Value::as_str)
            .ok_or(field("id", "a string"))?;
        let detail = v.get("detail").ok_or(field("detail", "an object"))?;
        // `Opportunity *` events name the opportunity; snapshot events name their
        // resource, which is an opportunity (ResourceType is only `Opportunity`).
        let opportunity_id = match detail
            .pointer("/opportunity/identifier")
            .or_else(|| detail.pointer("/resourceSnapshot/resourceId"))
        {
            None | Some(Value::Null) => None,
            Some(Value::String(id)) if is_opportunity_id(id) => Some(id.clone()),
            Some(_) => {
                return Err(field(
                    "detail.opportunity.identifier",
                    "an opportunity id (O and 1 to 19 digits)",
                ));
            }
        };
        Ok(Event {
            id: format!("eventbridge:{id}"),
            source: Source::Partnercentral,
            kind: kind.to_string(),
            occurred_at: v.get("time").and_then(Value::as_str).map(str::to_string),
            deal_id: None,
            opportunity_id,
            company_id: None,
            property: None,
            change_source: None,
            source_id: None,
            pack: None,
            scheduled: None,
            also_changed: Vec::new(),
            payload: Value::Null,
        })
    }

    /// The event as a store keeps it. A HubSpot or EventBridge event is its payload
    /// alone, under `hubspot` or `eventbridge`: every other field is derived from the
    /// payload again when it is read ([`Event::from_stored_json`]), and for a webhook
    /// event that halves the bytes. Any other event, or one whose fields are not
    /// what its payload gives, is kept whole.
    pub fn to_stored_json(&self) -> serde_json::Result<String> {
        let (tag, derived) = match self.source {
            Source::Hubspot => ("hubspot", Event::hubspot_fields(&self.payload)),
            Source::Partnercentral => ("eventbridge", Event::eventbridge_fields(&self.payload)),
            Source::Schedule => return serde_json::to_string(self),
        };
        match derived {
            Ok(d) if d.same_apart_from_payload(self) => Ok(format!(
                "{{\"{tag}\":{}}}",
                serde_json::to_string(&self.payload)?
            )),
            _ => serde_json::to_string(self),
        }
    }

    /// Reads what [`Event::to_stored_json`] wrote (or an event serialized whole).
    pub fn from_stored_json(text: &str) -> Result<Event, String> {
        let mut value: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if let Some(only) = value.as_object_mut().filter(|o| o.len() == 1) {
            if let Some(payload) = only.remove("hubspot") {
                return Event::from_hubspot_owned(payload).map_err(|e| e.to_string());
            }
            if let Some(payload) = only.remove("eventbridge") {
                let mut event = Event::eventbridge_fields(&payload).map_err(|e| e.to_string())?;
                event.payload = payload;
                return Ok(event);
            }
        }
        serde_json::from_value(value).map_err(|e| e.to_string())
    }

    fn same_apart_from_payload(&self, other: &Event) -> bool {
        self.id == other.id
            && self.source == other.source
            && self.kind == other.kind
            && self.occurred_at == other.occurred_at
            && self.deal_id == other.deal_id
            && self.opportunity_id == other.opportunity_id
            && self.company_id == other.company_id
            && self.property == other.property
            && self.change_source == other.change_source
            && self.source_id == other.source_id
            && self.pack == other.pack
            && self.scheduled == other.scheduled
            && self.also_changed == other.also_changed
    }

    /// A scheduled run of `pack` for one deal or opportunity.
    pub fn schedule(
        pack: &str,
        deal_id: Option<String>,
        opportunity_id: Option<String>,
        now: Timestamp,
    ) -> Event {
        let subject = deal_id
            .clone()
            .or_else(|| opportunity_id.clone())
            .unwrap_or_default();
        Event {
            id: format!("schedule:{pack}:{subject}:{now}"),
            source: Source::Schedule,
            kind: "schedule".into(),
            occurred_at: Some(now.to_string()),
            deal_id,
            opportunity_id,
            company_id: None,
            property: None,
            change_source: None,
            source_id: None,
            pack: Some(pack.to_string()),
            scheduled: None,
            also_changed: Vec::new(),
            payload: Value::Null,
        }
    }
}

/// HubSpot ids are numbers in webhooks and strings in the REST API.
/// Member lookup for [`Event::hubspot_fields_of`].
struct Getter<F>(F);

impl<'v, F: Fn(&str) -> Option<&'v Value>> Getter<F> {
    fn get(&self, key: &str) -> Option<&'v Value> {
        (self.0)(key)
    }
}

/// The members of a HubSpot event its fields come from, read from an object only:
/// serde's derived readers would also take a JSON array as the members in order,
/// which HubSpot never sends and the stored form cannot read back (a fuzz finding).
/// The other members are walked and checked, not kept, so that text read here
/// also reads whole, as the worker reads it (a number out of range fails here).
/// A member present as `null` is `Some(Null)`, as in the tree; a member given
/// twice is an error, and the caller reads such text the long way.
#[derive(Default)]
struct HubspotMembers {
    subscription_type: Option<Value>,
    event_type: Option<Value>,
    object_id: Option<Value>,
    occurred_at: Option<Value>,
    property_name: Option<Value>,
    property_value: Option<Value>,
    event_id: Option<Value>,
    portal_id: Option<Value>,
    change_source: Option<Value>,
    source_id: Option<Value>,
}

impl HubspotMembers {
    fn slot(&mut self, key: &str) -> Option<&mut Option<Value>> {
        Some(match key {
            "subscriptionType" => &mut self.subscription_type,
            "eventType" => &mut self.event_type,
            "objectId" => &mut self.object_id,
            "occurredAt" => &mut self.occurred_at,
            "propertyName" => &mut self.property_name,
            "propertyValue" => &mut self.property_value,
            "eventId" => &mut self.event_id,
            "portalId" => &mut self.portal_id,
            "changeSource" => &mut self.change_source,
            "sourceId" => &mut self.source_id,
            _ => return None,
        })
    }

    fn get(&self, key: &str) -> Option<&Value> {
        match key {
            "subscriptionType" => self.subscription_type.as_ref(),
            "eventType" => self.event_type.as_ref(),
            "objectId" => self.object_id.as_ref(),
            "occurredAt" => self.occurred_at.as_ref(),
            "propertyName" => self.property_name.as_ref(),
            "propertyValue" => self.property_value.as_ref(),
            "eventId" => self.event_id.as_ref(),
            "portalId" => self.portal_id.as_ref(),
            "changeSource" => self.change_source.as_ref(),
            "sourceId" => self.source_id.as_ref(),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for HubspotMembers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = HubspotMembers;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a HubSpot event object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<HubspotMembers, A::Error> {
                let mut members = HubspotMembers::default();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match members.slot(&key) {
                        Some(Some(_)) => return Err(serde::de::Error::duplicate_field("member")),
                        Some(slot) => *slot = Some(map.next_value()?),
                        None => map.next_value::<Checked>().map(|_| ())?,
                    }
                }
                Ok(members)
            }
        }
        d.deserialize_map(Members)
    }
}

/// Any JSON value, read and checked as [`Value`] would read it (numbers in range,
/// strings valid), without building it.
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Walk;
        impl<'de> serde::de::Visitor<'de> for Walk {
            type Value = Checked;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_unit<E>(self) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Checked, A::Error> {
                while seq.next_element::<Checked>()?.is_some() {}
                Ok(Checked)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Checked, A::Error> {
                while map.next_entry::<Checked, Checked>()?.is_some() {}
                Ok(Checked)
            }
        }
        d.deserialize_any(Walk)
    }
}

/// Whether `id` is a Partner Central opportunity id (`O[0-9]{1,19}`, the service
/// model's `OpportunityIdentifier`).
pub fn is_opportunity_id(id: &str) -> bool {
    id.strip_prefix('O').is_some_and(|digits| {
        (1..=19).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
    })
}

fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stored_events_read_back_the_same_and_webhook_events_keep_only_their_payload() {
        let hubspot = Event::from_hubspot(&json!({"eventId": 7, "portalId": 62515, "occurredAt": 1795873324127i64,
            "subscriptionType": "deal.propertyChange", "objectId": 40000000001u64, "propertyName": "dealstage",
            "propertyValue": "closedwon", "changeSource": "CRM_UI", "sourceId": "userId:1"}))
        .unwrap();
        let eventbridge =
            Event::from_eventbridge(&json!({"id": "e-1", "source": "aws.partnercentral-selling",
            "detail-type": "Opportunity Updated", "time": "2026-11-28T10:00:00Z",
            "detail": {"opportunity": {"identifier": "O1234567"}}}))
            .unwrap();
        let scheduled = Event::schedule("snapshots", Some("1".into()), None, Timestamp::UNIX_EPOCH);
        let mut edited = hubspot.clone();
        edited.deal_id = Some("2".into());
        for event in [&hubspot, &eventbridge, &scheduled, &edited] {
            let text = event.to_stored_json().unwrap();
            assert_eq!(&Event::from_stored_json(&text).unwrap(), event, "{text}");
        }
        let text = hubspot.to_stored_json().unwrap();
        assert!(
            text.starts_with(r#"{"hubspot":{"#) && !text.contains(r#""id":"hubspot:"#),
            "{text}"
        );
        assert!(
            eventbridge
                .to_stored_json()
                .unwrap()
                .starts_with(r#"{"eventbridge":{"#)
        );
        // Fields that differ from what the payload gives are kept: the whole event.
        assert!(
            edited
                .to_stored_json()
                .unwrap()
                .contains(r#""deal_id":"2""#)
        );
        assert!(Event::from_stored_json("{").is_err());
    }

    #[test]
    fn hubspot_fields_from_text_match_those_of_the_tree() {
        let cases = [
            r#"{"eventId":7,"portalId":62515,"occurredAt":1795873324127,"subscriptionType":"deal.propertyChange","objectId":40000000001,"propertyName":"dealstage","propertyValue":"closedwon","changeSource":"CRM_UI","sourceId":"userId:1","attemptNumber":0}"#,
            r#"{"eventId":null,"portalId":"62515","objectId":"42","eventType":"deal.creation","extra":{"nested":[1,2,{"a":null}]}}"#,
            r#"{"eventId":1.5e3,"subscriptionType":"deal.propertyChange","objectId":1,"propertyName":"amount","propertyValue":null}"#,
            r#"{"subscriptionType":"deal.propertyChange","objectId":1}"#,
            r#"{"subscriptionType":7,"eventType":"deal.creation","objectId":1}"#,
            r#"{"subscriptionType":"deal.deletion","objectId":"","eventId":"x"}"#,
            r#"{"subscriptionType":"deal.creation","objectId":1,"objectId":2}"#,
            r#"{"subscriptionType":"deal.creation","objectId":1,"occurredAt":"yesterday","sourceId":"\u0041pp"}"#,
            r#"[1,2]"#,
            r#"12"#,
            // The members in order, as an array: derived readers took this as an event.
            r#"["deal.creation","deal.creation",1]"#,
            r#"[["0","0",1]]"#,
        ];
        for text in cases {
            let tree: Value = serde_json::from_str(text).unwrap();
            let long = Event::hubspot_fields(&tree);
            assert_eq!(Event::hubspot_fields_from_text(text), long, "{text}");
        }
    }

    #[test]
    fn text_whose_fields_read_but_which_does_not_read_whole_is_refused() {
        // A number out of range in a member the fields do not use: the worker reads
        // the event whole and would fail there.
        let text = r#"{"subscriptionType":"deal.creation","objectId":1,"occurrdtAe":33.3e3001}"#;
        let e = Event::hubspot_fields_from_text(text).unwrap_err();
        assert!(e.to_string().contains("number out of range"), "{e}");
        // …also deep inside, and in a member name's escapes.
        let deep = r#"{"subscriptionType":"deal.creation","objectId":1,"x":[{"y":[1e999]}]}"#;
        assert!(Event::hubspot_fields_from_text(deep).is_err());
        let key = r#"{"subscriptionType":"deal.creation","objectId":1,"\uZZZZ":1}"#;
        assert!(Event::hubspot_fields_from_text(key).is_err());
    }

    #[test]
    fn hubspot_property_change_from_a_real_payload() {
        // A captured deal.propertyChange (reference §1.2).
        let v = json!({"attemptNumber":0,"sourceId":"39522895","eventId":2995724042u64,"changeSource":"INTEGRATION","occurredAt":1782371972438u64,
            "subscriptionType":"deal.propertyChange","propertyName":"amount","portalId":48975575,"appId":39522895,
            "propertyValue":"2000","subscriptionId":6547123,"objectId":332507367156u64});
        let e = Event::from_hubspot(&v).unwrap();
        assert_eq!(e.kind, "deal.propertyChange");
        assert_eq!(e.deal_id.as_deref(), Some("332507367156"));
        assert_eq!(
            e.property,
            Some(PropertyChange {
                name: "amount".into(),
                value: Some("2000".into())
            })
        );
        assert_eq!(e.occurred_at.as_deref(), Some("2026-06-25T07:19:32.438Z"));
        assert_eq!(e.source_id.as_deref(), Some("39522895"));
    }

    #[test]
    fn hubspot_event_type_is_accepted_as_an_alias() {
        let v = json!([{"objectId":1,"eventType":"deal.creation","eventId":3,"occurredAt":0}]);
        let e = Event::from_value(&v, Timestamp::UNIX_EPOCH).unwrap();
        assert_eq!(e.kind, "deal.creation");
    }

    #[test]
    fn property_change_without_property_is_an_error() {
        let v = json!({"objectId":1,"subscriptionType":"deal.propertyChange"});
        assert_eq!(
            Event::from_hubspot(&v).unwrap_err(),
            EventError::Field {
                kind: "HubSpot",
                field: "propertyName",
                expected: "a string"
            }
        );
    }

    #[test]
    fn eventbridge_opportunity_and_snapshot_events_name_the_opportunity() {
        let updated = json!({"version":"1","id":"e-1","source":"aws.partnercentral-selling","detail-type":"Opportunity Updated",
            "time":"2023-04-16T15:23:45Z","region":"us-east-1","account":"123456789012",
            "detail":{"schemaVersion":"1","catalog":"Sandbox","opportunity":{"identifier":"O1234567"}}});
        let e = Event::from_value(&updated, Timestamp::UNIX_EPOCH).unwrap();
        assert_eq!(
            (e.source, e.opportunity_id.as_deref()),
            (Source::Partnercentral, Some("O1234567"))
        );
        let snapshot = json!({"id":"e-2","detail-type":"Engagement Resource Snapshot Created","detail":{"catalog":"AWS",
            "resourceSnapshot":{"engagementId":"eng-v7p8z56whnauo","resourceType":"Opportunity","resourceId":"O123211231"}}});
        assert_eq!(
            Event::from_eventbridge(&snapshot)
                .unwrap()
                .opportunity_id
                .as_deref(),
            Some("O123211231")
        );
    }

    #[test]
    fn ids_that_are_not_ids_are_refused_before_they_reach_a_url() {
        for object_id in [
            json!("40000000005/../40000000001"),
            json!("1/../../../../crm/v3/owners?x="),
            json!("12a"),
            json!("123456789012345678901"),
            json!(-4),
        ] {
            let v =
                json!({"objectId": object_id, "subscriptionType": "deal.creation", "eventId": 1});
            assert_eq!(
                Event::from_hubspot(&v).unwrap_err(),
                EventError::Field {
                    kind: "HubSpot",
                    field: "objectId",
                    expected: "a number"
                },
                "{object_id}"
            );
        }
        assert_eq!(
            Event::from_hubspot(&json!({"objectId": "42", "subscriptionType": "deal.creation"}))
                .unwrap()
                .deal_id
                .as_deref(),
            Some("42")
        );
        for identifier in [json!("O1/../O2"), json!("1234"), json!("O"), json!(7)] {
            let v = json!({"id": "e-1", "detail-type": "Opportunity Updated",
                "detail": {"catalog": "AWS", "opportunity": {"identifier": identifier}}});
            assert!(
                matches!(
                    Event::from_eventbridge(&v),
                    Err(EventError::Field {
                        field: "detail.opportunity.identifier",
                        ..
                    })
                ),
                "{identifier}"
            );
        }
    }

    #[test]
    fn unknown_shapes_are_refused() {
        assert_eq!(
            Event::from_value(&json!({"x": 1}), Timestamp::UNIX_EPOCH),
            Err(EventError::Unknown)
        );
    }
}
