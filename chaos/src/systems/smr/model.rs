//! The vaccine database as a sequential specification, one site per
//! partition: a site is a key whose value is its ZIP code and availability
//! (or no site). `view`, `edit` and `add` act on one key; `list` reads every
//! key, and is checked as one read per site (its row, or its absence).
//! That projection is P-compositional only for the single-key operations;
//! for `list` it is a necessary condition (a history whose projection is
//! not linearizable is not either), so a failure is a real one.
//!
//! The outputs are the seed's lines, written again here on purpose: a
//! checker that reused the replicas' code would agree with its bugs.

use crate::check::{Model, Operation, Partition};
use faultline_node::protocol::smr::db::{Availability, Command};
use std::collections::BTreeMap;

/// A site's value: its ZIP code and availability.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SiteValue {
    pub zip: String,
    pub availability: Availability,
}

/// One key's operation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SiteOp {
    /// A database command on this site (`view`, `edit`, `add`).
    One(Command),
    /// `list`, as far as this site goes.
    ListRow { site: String },
}

impl SiteOp {
    pub fn site(&self) -> &str {
        match self {
            SiteOp::One(Command::View { site })
            | SiteOp::One(Command::Edit { site, .. })
            | SiteOp::One(Command::Add { site, .. })
            | SiteOp::ListRow { site } => site,
            SiteOp::One(Command::List) => "",
        }
    }
}

const NO_SUCH_SITE: &str = "Site does not exist. Choose [l] to view all sites.";

fn show(a: &Availability) -> String {
    match a {
        Availability::Count(n) => n.to_string(),
        Availability::Flag(true) => "True".into(),
        Availability::Flag(false) => "False".into(),
    }
}

/// What `op` answers on one site's `state`, and the state after.
pub fn step(state: &Option<SiteValue>, op: &SiteOp) -> (Vec<String>, Option<SiteValue>) {
    match (op, state) {
        (SiteOp::ListRow { site }, Some(v)) => (
            vec![format!("{},{},{site}", show(&v.availability), v.zip)],
            state.clone(),
        ),
        (SiteOp::ListRow { .. }, None) => (Vec::new(), None),
        (SiteOp::One(Command::View { site }), Some(v)) => (
            vec![format!(
                "Availability at {site} (ZIP code {}): {}",
                v.zip,
                show(&v.availability)
            )],
            state.clone(),
        ),
        (SiteOp::One(Command::Edit { site, availability }), Some(v)) => (
            vec![format!(
                "Vaccine availability at {site} (ZIP code {}) updated to {}.",
                v.zip,
                show(availability)
            )],
            Some(SiteValue {
                zip: v.zip.clone(),
                availability: *availability,
            }),
        ),
        (SiteOp::One(Command::Add { site, .. }), Some(_)) => {
            (vec![format!("{site} already in database.")], state.clone())
        }
        (SiteOp::One(Command::Add { site, zip }), None) => (
            vec![format!(
                "{site} (ZIP code {zip}) added with vaccine availability 0."
            )],
            Some(SiteValue {
                zip: zip.clone(),
                availability: Availability::Count(0),
            }),
        ),
        (SiteOp::One(Command::View { .. } | Command::Edit { .. }), None) => {
            (vec![NO_SUCH_SITE.to_string()], None)
        }
        (SiteOp::One(Command::List), _) => (Vec::new(), state.clone()),
    }
}

/// The database at start, per site (the seed's: Harvard University, 02138, 0).
#[derive(Clone, Debug)]
pub struct SitesModel {
    pub initial: BTreeMap<String, SiteValue>,
}

impl Default for SitesModel {
    fn default() -> Self {
        let mut initial = BTreeMap::new();
        initial.insert(
            "Harvard University".to_string(),
            SiteValue {
                zip: "02138".into(),
                availability: Availability::Count(0),
            },
        );
        SitesModel { initial }
    }
}

impl Model for SitesModel {
    type State = Option<SiteValue>;
    type Input = SiteOp;
    type Output = Vec<String>;

    fn init(&self) -> Option<SiteValue> {
        None
    }

    fn step(
        &self,
        state: &Option<SiteValue>,
        input: &SiteOp,
        output: Option<&Vec<String>>,
    ) -> Option<Option<SiteValue>> {
        let (answer, next) = step(state, input);
        match output {
            None => Some(next),
            Some(o) if *o == answer => Some(next),
            Some(_) => None,
        }
    }

    fn is_read_only(&self, input: &SiteOp, _output: Option<&Vec<String>>) -> bool {
        matches!(
            input,
            SiteOp::ListRow { .. } | SiteOp::One(Command::View { .. } | Command::List)
        )
    }

    fn partition(&self, history: &[Operation<SiteOp, Vec<String>>]) -> Vec<Partition<Self::State>> {
        let mut by: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, op) in history.iter().enumerate() {
            by.entry(op.input.site().to_string()).or_default().push(i);
        }
        by.into_iter()
            .map(|(site, ops)| Partition {
                init: self.initial.get(&site).cloned(),
                key: format!("site {site:?}"),
                ops,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_node::protocol::smr::db::Db;

    /// The model and the replicas' database agree on every command of a
    /// small script (they are written apart; this keeps them honest).
    #[test]
    fn the_model_answers_as_the_database() {
        let mut db = Db::default();
        let mut model: BTreeMap<String, Option<SiteValue>> = SitesModel::default()
            .initial
            .into_iter()
            .map(|(k, v)| (k, Some(v)))
            .collect();
        let script = [
            Command::View {
                site: "Harvard University".into(),
            },
            Command::Edit {
                site: "Harvard University".into(),
                availability: Availability::Count(10),
            },
            Command::Add {
                site: "MIT".into(),
                zip: "02138".into(),
            },
            Command::Add {
                site: "MIT".into(),
                zip: "02139".into(),
            },
            Command::Edit {
                site: "MIT".into(),
                availability: Availability::Flag(false),
            },
            Command::View {
                site: "Tufts".into(),
            },
            Command::Edit {
                site: "Tufts".into(),
                availability: Availability::Count(1),
            },
        ];
        for c in script {
            let want = db.apply(&c).expect("valid");
            let op = SiteOp::One(c);
            let st = model.entry(op.site().to_string()).or_insert(None);
            let (got, next) = step(st, &op);
            *st = next;
            assert_eq!(got, want, "{op:?}");
        }
        let list = db.apply(&Command::List).expect("list");
        let rows: Vec<String> = model
            .iter()
            .flat_map(|(site, st)| step(st, &SiteOp::ListRow { site: site.clone() }).0)
            .collect();
        assert_eq!(list[1..], rows[..]);
    }
}
