//! The replicated store's client verbs: `add KEY N` (a counter; prints the
//! new value), `put KEY VALUE` and `get KEY` (registers). Every operation
//! goes to this client node, which finds the primary (passive) or every
//! member (active) by itself and retries until it has an answer.

use super::store::{Answer, Op};
use super::{Replication, Reply};
use crate::api::OpReply;
use crate::cli::{Client, Output};
use std::fmt;

#[derive(clap::Subcommand, Debug)]
pub enum Verb {
    /// Add N (may be negative) to counter KEY; prints the new value.
    Add {
        key: String,
        #[arg(allow_hyphen_values = true, value_parser = parse_n)]
        n: i64,
    },
    /// Set register KEY to VALUE.
    Put { key: String, value: String },
    /// Read register KEY.
    Get { key: String },
}

fn parse_n(s: &str) -> Result<i64, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("N is a whole number (may be negative), got {s:?}"))
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Done {
                answer,
                replica,
                view,
                ..
            } => {
                match answer {
                    Answer::Counter(v) => write!(f, "{v}")?,
                    Answer::Register(Some(v)) => write!(f, "{v}")?,
                    Answer::Register(None) => write!(f, "(none)")?,
                    Answer::Refused(e) => write!(f, "refused: {e}")?,
                }
                write!(f, "  (from {replica} in view {view})")
            }
            Reply::Unknown { error } | Reply::Failed { error } => write!(f, "{error}"),
        }
    }
}

fn render(op: &OpReply<Reply>) -> Output {
    Client::<Replication>::render(op, Reply::to_string)
}

pub(super) async fn run(c: &Client<Replication>, verb: Verb) -> anyhow::Result<Output> {
    let op = match verb {
        Verb::Add { key, n } => Op::Add { key, n },
        Verb::Put { key, value } => Op::Put { key, value },
        Verb::Get { key } => Op::Get { key },
    };
    let r = c.op(c.id(), &op).await?;
    Ok(render(&r))
}
