//! Sightings on SQLite: per opportunity read, its stage and review status and when
//! its AWS summary was last read.

use super::*;
use crate::store::{Sighting, Sightings, SummaryAges};

impl Sightings for SqliteStore {
    fn saw_opportunity(
        &self,
        id: &str,
        stage: Option<&str>,
        review_status: Option<&str>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.db()
            .conn
            .execute(
                "INSERT INTO opportunity_seen (opportunity_id, stage, review_status, read_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT DO UPDATE SET stage = excluded.stage,
                     review_status = excluded.review_status, read_at = excluded.read_at",
                params![id, stage, review_status, now_ms],
            )
            .map_err(err)?;
        Ok(())
    }

    fn saw_summary(&self, id: &str, now_ms: i64) -> Result<(), StoreError> {
        self.db()
            .conn
            .execute(
                "INSERT INTO opportunity_seen (opportunity_id, read_at, summary_at)
                 VALUES (?1, ?2, ?2)
                 ON CONFLICT DO UPDATE SET summary_at = excluded.summary_at",
                params![id, now_ms],
            )
            .map_err(err)?;
        Ok(())
    }

    fn sightings(&self) -> Result<std::collections::HashMap<String, Sighting>, StoreError> {
        let db = self.db();
        let mut q = db
            .conn
            .prepare_cached(
                "SELECT opportunity_id, stage, review_status, read_at, summary_at
                 FROM opportunity_seen",
            )
            .map_err(err)?;
        q.query_map([], |r| {
            let stage: Option<String> = r.get(1)?;
            let review_status: Option<String> = r.get(2)?;
            // A row only a summary read wrote has neither.
            let full = stage.is_some() || review_status.is_some();
            Ok((
                r.get::<_, String>(0)?,
                Sighting {
                    read_at: if full { Some(r.get(3)?) } else { None },
                    stage,
                    review_status,
                    summary_at: r.get(4)?,
                },
            ))
        })
        .map_err(err)?
        .collect::<Result<_, _>>()
        .map_err(err)
    }

    fn summary_ages(&self, now_ms: i64) -> Result<SummaryAges, StoreError> {
        let db = self.db();
        let mut q = db
            .conn
            .prepare_cached(
                "SELECT summary_at FROM opportunity_seen
                 WHERE COALESCE(review_status, '') NOT IN ('', 'Pending Submission')
                   AND COALESCE(stage, '') NOT IN ('Launched', 'Closed Lost')",
            )
            .map_err(err)?;
        let read: Vec<Option<i64>> = q
            .query_map([], |r| r.get(0))
            .map_err(err)?
            .collect::<Result<_, _>>()
            .map_err(err)?;
        let mut ages: Vec<u64> = read
            .iter()
            .flatten()
            .map(|at| ((now_ms - at).max(0) / 1000) as u64)
            .collect();
        ages.sort_unstable();
        let at = |q: f64| {
            (!ages.is_empty()).then(|| ages[((ages.len() - 1) as f64 * q).round() as usize])
        };
        Ok(SummaryAges {
            opportunities: read.len() as u64,
            never_read: read.iter().filter(|r| r.is_none()).count() as u64,
            p50_s: at(0.5),
            p95_s: at(0.95),
            oldest_s: ages.last().copied(),
        })
    }
}
