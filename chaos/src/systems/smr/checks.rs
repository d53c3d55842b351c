//! The database's checks, read from the replicas' final `/state` (their
//! executed logs and databases) and the clients' histories:
//! - `prefix`: at every scrape, replicas that published a checkpoint at
//!   the same index published the same digest of their logs to it (this
//!   sees a divergence even if the replica later rejoins and takes a
//!   snapshot over it); at the end, every two replicas' logs agree
//!   wherever both have an index (each is a prefix of the longer), and
//!   replicas at the same index hold the same database. The first
//!   divergence is reported (index, and both entries when the logs have
//!   them).
//! - `replay`: a sequential replay of the longest log, on the model written
//!   apart from the replicas' code, gives every reply a client received at
//!   the index the reply names, and ends in the database the replicas hold.
//! - `replies-agree`: no client saw two replicas answer one request
//!   differently, and no rejoining replica found a snapshot at odds with
//!   its own log (both are counted by the nodes).
//! - `linearizable`: the histories against the per-site model.

use super::model::{step, SiteOp, SiteValue, SitesModel};
use super::{smr_ops, SmrOp};
use crate::check::{check_parallel, CheckOptions, Operation};
use crate::judge::{linearizability_outcome, outcome, rel_ms_json, LinSummary};
use crate::results::{CheckOutcome, Valid};
use crate::systems::Judging;
use faultline_node::api::{NodeState, Outcome as ApiOutcome};
use faultline_node::protocol::smr::db::Command;
use faultline_node::protocol::smr::order::Body;
use faultline_node::protocol::smr::replica::Executed;
use faultline_node::protocol::smr::{Reply, Request, SiteRow, SmrState};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

/// Every node's final state that reads as smr's, by node.
fn states(run: &Judging<'_>) -> BTreeMap<String, SmrState> {
    run.record
        .states
        .iter()
        .filter_map(|(id, v)| {
            let s: NodeState<SmrState> = serde_json::from_value(v.clone()).ok()?;
            Some((id.clone(), s.state))
        })
        .collect()
}

fn replica_states(run: &Judging<'_>) -> BTreeMap<String, SmrState> {
    states(run)
        .into_iter()
        .filter(|(_, s)| s.mode == "replica" || s.mode == "joining")
        .collect()
}

/// The same entry: one message of one source's stream.
fn same(a: &Executed, b: &Executed) -> bool {
    a.entry.source == b.entry.source && a.entry.seq == b.entry.seq && a.entry.body == b.entry.body
}

/// Checkpoints published at the scrapes: index, then digest and the first
/// replica (and time) that published it. The first disagreement, if any.
fn scraped_checkpoints(run: &Judging<'_>) -> (usize, Option<CheckOutcome>) {
    let mut seen: BTreeMap<u64, (u64, String, u64)> = BTreeMap::new();
    for target in run.scrapes.targets() {
        for scrape in run.scrapes.ok(target) {
            let value = |name: &str| {
                scrape
                    .samples
                    .iter()
                    .find(|s| s.name == name)
                    .map(|s| s.value as u64)
            };
            let (Some(index), Some(digest)) = (
                value("faultline_smr_checkpoint_index"),
                value("faultline_smr_checkpoint_digest"),
            ) else {
                continue;
            };
            if index == 0 {
                continue;
            }
            match seen.get(&index) {
                None => {
                    seen.insert(index, (digest, target.to_string(), scrape.t_us));
                }
                Some((d, other, t)) if *d != digest => {
                    let at = |t: u64| rel_ms_json(t, run.record.meta.start_us);
                    return (
                        seen.len(),
                        Some(outcome(
                            "prefix",
                            Valid::False,
                            format!(
                                "{other} (at {} ms) and {target} (at {} ms) published different digests of their logs up to index {index}: they executed different sequences",
                                at(*t),
                                at(scrape.t_us)
                            ),
                            json!({"index": index, "replicas": [other, target], "digests": [d, digest], "t_ms": [at(*t), at(scrape.t_us)]}),
                        )),
                    );
                }
                Some(_) => {}
            }
        }
    }
    (seen.len(), None)
}

pub(super) fn prefix(run: &Judging<'_>) -> CheckOutcome {
    const NAME: &str = "prefix";
    let (checkpoints, diverged) = scraped_checkpoints(run);
    if let Some(o) = diverged {
        return o;
    }
    let reps = replica_states(run);
    if reps.is_empty() {
        return outcome(
            NAME,
            Valid::Unknown,
            "no replica answered at the end of the run",
            json!(null),
        );
    }
    let logs: BTreeMap<&String, BTreeMap<u64, &Executed>> = reps
        .iter()
        .map(|(id, s)| {
            let log = s.log.as_deref().unwrap_or_default();
            (id, log.iter().map(|x| (x.index, x)).collect())
        })
        .collect();
    let mut compared = 0u64;
    let ids: Vec<&String> = logs.keys().copied().collect();
    for (i, a) in ids.iter().enumerate() {
        for b in &ids[i + 1..] {
            for (index, x) in &logs[a] {
                let Some(y) = logs[b].get(index) else {
                    continue;
                };
                compared += 1;
                if !same(x, y) {
                    return outcome(
                        NAME,
                        Valid::False,
                        format!(
                            "{a} and {b} executed different entries at index {index}: {} seq {} ({}) and {} seq {} ({})",
                            x.entry.source, x.entry.seq, body(&x.entry.body),
                            y.entry.source, y.entry.seq, body(&y.entry.body)
                        ),
                        json!({"index": index, "replicas": [a, b], "entries": [x, y]}),
                    );
                }
            }
            let (sa, sb) = (&reps[*a], &reps[*b]);
            if sa.index == sb.index
                && sa.mode == "replica"
                && sb.mode == "replica"
                && sa.sites != sb.sites
            {
                return outcome(
                    NAME,
                    Valid::False,
                    format!(
                        "{a} and {b} both executed {} entries but hold different databases",
                        sa.index
                    ),
                    json!({"index": sa.index, "replicas": [a, b], "sites": [sa.sites, sb.sites]}),
                );
            }
        }
    }
    let indexes: BTreeMap<&String, u64> = reps.iter().map(|(id, s)| (id, s.index)).collect();
    outcome(
        NAME,
        Valid::True,
        format!(
            "{} replicas' logs are prefixes of one another ({compared} index pairs at the end and {checkpoints} checkpoints at the scrapes compared; executed {})",
            reps.len(),
            indexes
                .iter()
                .map(|(id, n)| format!("{id} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        json!({"executed": indexes, "pairs_compared": compared, "checkpoints_compared": checkpoints}),
    )
}

fn body(b: &Body) -> String {
    match b {
        Body::Request { op, command } => format!("request {op}: {command:?}"),
        other => format!("{other:?}"),
    }
}

/// The model's answer to a whole command on the whole database.
fn apply(db: &mut BTreeMap<String, SiteValue>, c: &Command) -> Vec<String> {
    if let Command::List = c {
        let mut out = vec!["Availability,ZIP Code,Site Name".to_string()];
        for site in db.keys() {
            out.extend(
                step(
                    &db.get(site).cloned(),
                    &SiteOp::ListRow { site: site.clone() },
                )
                .0,
            );
        }
        return out;
    }
    let op = SiteOp::One(c.clone());
    let site = op.site().to_string();
    let (lines, next) = step(&db.get(&site).cloned(), &op);
    match next {
        Some(v) => db.insert(site, v),
        None => db.remove(&site),
    };
    lines
}

pub(super) fn replay(run: &Judging<'_>) -> CheckOutcome {
    const NAME: &str = "replay";
    let reps = replica_states(run);
    let Some((node, longest)) = reps
        .iter()
        .filter(|(_, s)| s.mode == "replica")
        .max_by_key(|(_, s)| s.index)
    else {
        return outcome(
            NAME,
            Valid::Unknown,
            "no replica in the order answered at the end",
            json!(null),
        );
    };
    let log = longest.log.clone().unwrap_or_default();
    if log.first().is_some_and(|x| x.index != 1) {
        return outcome(
            NAME,
            Valid::Unknown,
            format!(
                "{node} keeps its log from index {} only (raise smr.log_keep)",
                log[0].index
            ),
            json!(null),
        );
    }
    let mut db: BTreeMap<String, SiteValue> = SitesModel::default().initial;
    let mut answers: BTreeMap<u64, (String, Command, Vec<String>)> = BTreeMap::new();
    for x in &log {
        if let Body::Request { command, .. } = &x.entry.body {
            let lines = if command.validate().is_ok() {
                apply(&mut db, command)
            } else {
                Vec::new()
            };
            answers.insert(
                x.index,
                (x.entry.source.node.clone(), command.clone(), lines),
            );
        }
    }
    let want_sites: Vec<SiteRow> = db
        .iter()
        .map(|(name, v)| SiteRow {
            name: name.clone(),
            zip: v.zip.clone(),
            availability: v.availability,
        })
        .collect();
    if longest.sites.as_ref() != Some(&want_sites) {
        return outcome(
            NAME,
            Valid::False,
            format!(
                "{node}'s database is not the replay of its own log of {} entries",
                longest.index
            ),
            json!({"replica": node, "has": longest.sites, "replay": want_sites}),
        );
    }
    let (ops, _) = smr_ops(run.ops);
    let mut checked = 0u64;
    for op in &ops {
        let (Request::Command(command), Some(Reply::Done { index, lines })) =
            (&op.request, &op.reply)
        else {
            continue;
        };
        match answers.get(index) {
            Some((client, c, want))
                if client == &op.src.client && c == command && want == lines =>
            {
                checked += 1
            }
            other => {
                let why = match other {
                    None if *index > longest.index => format!(
                        "no replica's log reaches index {index} ({node} is at {})",
                        longest.index
                    ),
                    None => format!("index {index} of {node}'s log is not a request"),
                    Some((client, c, _)) if client != &op.src.client || c != command => {
                        format!("{node}'s log has {client}'s {c:?} there")
                    }
                    Some(_) => "the replay answers differently".to_string(),
                };
                return outcome(
                    NAME,
                    Valid::False,
                    format!(
                        "{} got {lines:?} for {command:?} at index {index}, but {why}",
                        op.src.client
                    ),
                    json!({"client": op.src.client, "index": index, "request": command, "reply": lines, "replay": other.map(|o| &o.2), "log_entry": other.map(|o| (&o.0, &o.1))}),
                );
            }
        }
    }
    outcome(
        NAME,
        Valid::True,
        format!("{checked} replies equal the replay of {node}'s log of {} entries, which ends in its database", longest.index),
        json!({"replies_checked": checked, "replica": node, "index": longest.index}),
    )
}

pub(super) fn replies_agree(run: &Judging<'_>) -> CheckOutcome {
    const NAME: &str = "replies-agree";
    let all = states(run);
    if all.is_empty() {
        return outcome(
            NAME,
            Valid::Unknown,
            "no node answered at the end of the run",
            json!(null),
        );
    }
    let mismatches: BTreeMap<&String, u64> = all
        .iter()
        .filter(|(_, s)| s.mismatches > 0)
        .map(|(id, s)| (id, s.mismatches))
        .collect();
    let conflicts: BTreeMap<&String, u64> = all
        .iter()
        .filter(|(_, s)| s.log_conflicts > 0)
        .map(|(id, s)| (id, s.log_conflicts))
        .collect();
    if mismatches.is_empty() && conflicts.is_empty() {
        return outcome(
            NAME,
            Valid::True,
            format!(
                "{} nodes saw no two replicas disagree (client replies, snapshot logs)",
                all.len()
            ),
            json!({"nodes": all.len()}),
        );
    }
    outcome(
        NAME,
        Valid::False,
        format!(
            "replicas disagreed: reply mismatches {:?}, snapshot log conflicts {:?} (counted by the nodes; their logs say where)",
            mismatches, conflicts
        ),
        json!({"reply_mismatches": mismatches, "log_conflicts": conflicts}),
    )
}

pub(super) fn linearizable(run: &Judging<'_>) -> CheckOutcome {
    const NAME: &str = "linearizable";
    let (ops, unreadable) = smr_ops(run.ops);
    // Every site any operation names, so a list is checked against each.
    let mut sites: BTreeSet<String> = SitesModel::default().initial.keys().cloned().collect();
    for op in &ops {
        if let Request::Command(c) = &op.request {
            let s = SiteOp::One(c.clone());
            if !s.site().is_empty() {
                sites.insert(s.site().to_string());
            }
        }
    }
    let mut history: Vec<Operation<SiteOp, Vec<String>>> = Vec::new();
    let mut left_out = 0u64;
    let mut push = |op: &SmrOp<'_>, input: SiteOp, output: Option<Vec<String>>, client: u64| {
        let call = op.src.invoke_us;
        match output {
            Some(o) => history.push(Operation::ok(
                client,
                input,
                call,
                op.src.complete_us.unwrap_or(call).max(call),
                o,
            )),
            None => history.push(Operation::unknown(client, input, call, None)),
        }
    };
    for (n, op) in ops.iter().enumerate() {
        let Request::Command(command) = &op.request else {
            continue;
        };
        let client = n as u64;
        match (&op.src.outcome, &op.reply) {
            (ApiOutcome::Ok, Some(Reply::Done { lines, .. })) => match command {
                Command::List => {
                    let rows: BTreeMap<&str, &String> = lines
                        .iter()
                        .skip(1)
                        .filter_map(|l| Some((l.splitn(3, ',').nth(2)?, l)))
                        .collect();
                    for site in &sites {
                        let row = rows
                            .get(site.as_str())
                            .map(|l| vec![(*l).clone()])
                            .unwrap_or_default();
                        push(
                            op,
                            SiteOp::ListRow { site: site.clone() },
                            Some(row),
                            client,
                        );
                    }
                }
                c => push(op, SiteOp::One(c.clone()), Some(lines.clone()), client),
            },
            // Refused input and failed operations changed nothing.
            (ApiOutcome::Ok, _) | (ApiOutcome::Failed, _) => left_out += 1,
            _ if command.is_write() => push(op, SiteOp::One(command.clone()), None, client),
            _ => left_out += 1,
        }
    }
    let truncated: u64 = run.record.histories.values().map(|h| h.truncated).sum();
    let result = check_parallel(
        &SitesModel::default(),
        &history,
        &CheckOptions {
            memory_limit: Some(run.opts.lin_memory_limit),
            ..CheckOptions::with_time_limit(run.opts.lin_time_limit)
        },
        run.opts.threads.max(1),
    );
    let base = json!({"operations": history.len(), "left_out": left_out, "unreadable": unreadable, "truncated": truncated});
    linearizability_outcome(
        LinSummary {
            name: NAME,
            objects: "sites",
            hint: "a list counts as a read of each site",
            operations: history.len(),
            truncated,
            unreadable,
        },
        result,
        base,
    )
}
