//! What a run reads before it plans: the deal (or its listing's copy), its company,
//! the opportunity, the AWS view, snapshots and the last-known state.

use indexmap::IndexMap;
use pcsync_engine::plan::Fetch;
use pcsync_engine::{Context, Event};
use serde_json::Value;

use super::Worker;
use crate::service::execute::{ExecError, Executor};

impl<E: Executor> Worker<E> {
    /// Notes what was read of the opportunity (its stage and review status) and
    /// whether its AWS summary was, for `/healthz`'s summary ages. Only bookkeeping:
    /// a store that refuses it does not fail the run.
    pub(super) fn note_sightings(
        &self,
        opportunity: Option<&Value>,
        summary: bool,
        id: Option<&str>,
    ) {
        let now = self.clock.now_ms();
        let noted = crate::service::blocking(|| {
            if let Some(o) = opportunity
                && let Some(id) = o["Id"].as_str()
            {
                let field = |f: &str| o.pointer(f).and_then(Value::as_str);
                self.store.saw_opportunity(
                    id,
                    field("/LifeCycle/Stage"),
                    field("/LifeCycle/ReviewStatus"),
                    now,
                )?;
            }
            match id {
                Some(id) if summary => self.store.saw_summary(id, now),
                _ => Ok(()),
            }
        });
        if let Err(e) = noted {
            tracing::debug!(error = %e, "cannot note what was read of an opportunity");
        }
    }

    /// Whether a copy of a deal that CRM search answered at `searched_ms` (a
    /// schedule's listing, or a deal found by its link) holds pcsync's own writes to
    /// it. Search lags writes (HubSpot reference §3.4), so it is never how pcsync
    /// reads its own write back: the copy does not stand for the deal when pcsync
    /// wrote the deal after the search, or shortly before and the copy shows other
    /// values ([`crate::service::poll::listing_holds`]); the deal is then read by id.
    pub(super) fn search_copy_holds(
        &self,
        copy: &pcsync_engine::DealSnapshot,
        searched_ms: i64,
    ) -> bool {
        let key = format!("deal:{}", copy.id);
        let catch_up = crate::service::poll::SEARCH_CATCH_UP.as_millis() as i64;
        let holds = crate::service::blocking(|| -> Result<bool, crate::store::StoreError> {
            if self.store.written_since(&key, searched_ms)? {
                return Ok(false);
            }
            let recent = self.store.writes_since(&key, searched_ms - catch_up)?;
            Ok(crate::service::poll::listing_holds(copy, &recent))
        });
        matches!(holds, Ok(true))
    }

    /// Loads what `fetch` names for `event`: the deal, its company, the opportunity,
    /// the AWS view, snapshots, the last-known state.
    pub(super) async fn resolve(&self, event: &Event, fetch: &Fetch) -> Result<Context, ExecError> {
        let x = &self.executor;
        let link = &fetch.link_property;
        let mut deal = match &event.deal_id {
            Some(id) => {
                // The listing's copy, unless it may miss pcsync's own writes
                // (another run's `remember_in` keys, say).
                let listed =
                    crate::service::poll::deal_from_listing(event, &fetch.deal, self.clock.now())
                        .filter(|listed| {
                            let at = crate::service::poll::listed_at(event)
                                .map_or(0, |t| t.as_millisecond());
                            self.search_copy_holds(listed, at)
                        });
                match listed {
                    Some(listed) => Some(listed),
                    None => x.deal(id, &fetch.deal).await?,
                }
            }
            None => None,
        };
        let opportunity_id = event.opportunity_id.clone().or_else(|| {
            deal.as_ref()
                .and_then(|d| d.property(link))
                .filter(|v| !v.is_empty())
        });
        let mut opportunity = None;
        if let Some(id) = &opportunity_id
            && (fetch.opportunity || deal.is_none())
        {
            opportunity = x.opportunity(id).await?;
        }
        if deal.is_none()
            && let Some(id) = &opportunity_id
        {
            let by_identifier = opportunity
                .as_ref()
                .and_then(|o| o["PartnerOpportunityIdentifier"].as_str())
                // A partner's own CRM id, not a deal's: find the deal by its link.
                .filter(|s| pcsync_adapters::hubspot::client::is_object_id(s));
            if let Some(deal_id) = by_identifier {
                deal = x.deal(deal_id, &fetch.deal).await?;
            }
            if deal.is_none() {
                deal = x.deal_linked_to(link, id, &fetch.deal).await?;
                // Search found the deal; its copy may predate pcsync's own writes.
                if let Some(found) = &deal
                    && !self.search_copy_holds(found, self.clock.now().as_millisecond())
                {
                    deal = x.deal(&found.id.clone(), &fetch.deal).await?;
                }
            }
        }
        // AWS keeps no summary of an opportunity it was never sent: before submission
        // there is none to read, whatever error AWS would answer for it.
        let unsubmitted = opportunity
            .as_ref()
            .and_then(|o| o.pointer("/LifeCycle/ReviewStatus"))
            .and_then(Value::as_str)
            == Some("Pending Submission");
        let aws_summary = match &opportunity_id {
            Some(id) if fetch.aws_summary && !unsubmitted => x.aws_summary(id).await?,
            _ => None,
        };
        self.note_sightings(
            opportunity.as_ref(),
            aws_summary.is_some(),
            opportunity_id.as_deref(),
        );
        let snapshots = match &opportunity_id {
            Some(id) if !fetch.snapshots.is_empty() => {
                x.snapshots(id, &fetch.snapshots, &*self.store, self.clock.now())
                    .await?
            }
            _ => Vec::new(),
        };
        let company = match &deal {
            Some(d) if !fetch.company.is_empty() => {
                x.primary_company(&d.id, &fetch.company).await?
            }
            _ => None,
        };
        let previous = match &opportunity_id {
            Some(id) if fetch.previous => crate::service::blocking(|| self.store.pack_states(id))?,
            _ => IndexMap::new(),
        };
        Ok(Context {
            deal,
            company,
            opportunity: if fetch.opportunity { opportunity } else { None },
            aws_summary,
            snapshots,
            previous,
        })
    }
}
