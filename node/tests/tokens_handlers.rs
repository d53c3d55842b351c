//! The token core handler by handler: one input in, the expected sends,
//! replies and records out (no simulator, no network).

use faultline_node::protocol::tokens::{
    Msg, Params, Record, Refusal, Reply, Request, Tag, TokensNode, WriteEntry,
};
use faultline_node::protocol::{Core, Outbox};
use rand::SeedableRng;
use std::sync::Arc;

fn params() -> Arc<Params> {
    let servers: Vec<String> = ["s1", "s2", "s3"].iter().map(|s| s.to_string()).collect();
    let clients: Vec<String> = ["c1", "c2"].iter().map(|s| s.to_string()).collect();
    let nodes = servers.iter().chain(&clients).cloned().collect();
    Arc::new(Params::with_defaults(
        nodes,
        servers,
        Params::round_robin_owners(&clients, 4),
    ))
}

fn tag(version: u64, writer: &str, nonce: u64) -> Tag {
    Tag {
        version,
        writer: writer.into(),
        nonce,
    }
}

fn pay(token: u32, t: Tag, to: &str, prev: Tag) -> WriteEntry {
    WriteEntry {
        token,
        tag: t,
        owner: to.into(),
        prev: Some(prev),
    }
}

/// Sends one write from `from` to server `s`; returns its answer.
fn write(s: &mut TokensNode, from: &str, rid: u64, entries: Vec<WriteEntry>) -> Msg {
    let mut out = Outbox::default();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let msg = Msg::Write {
        rid,
        epoch: 0,
        entries,
    };
    s.on_message(0, &from.to_string(), msg, &mut rng, &mut out);
    assert_eq!(out.sends.len(), 1, "one answer: {:?}", out.sends);
    out.sends.remove(0).1
}

#[test]
fn a_second_write_of_one_version_is_refused() {
    let mut s = TokensNode::new("s1".into(), params());
    // Token 0 starts at c1 (round robin); c1 pays it to c2: version 2.
    let first = pay(0, tag(2, "c1", 5), "c2", Tag::initial());
    assert!(matches!(
        write(&mut s, "c1", 1, vec![first.clone()]),
        Msg::WriteOk { rid: 1 }
    ));
    // A retransmission of the same write is acknowledged again.
    assert!(matches!(
        write(&mut s, "c1", 2, vec![first]),
        Msg::WriteOk { rid: 2 }
    ));
    // c1 writes version 2 again from a stale read (the double pay).
    let again = pay(0, tag(2, "c1", 9), "c1", Tag::initial());
    match write(&mut s, "c1", 3, vec![again]) {
        Msg::Refused {
            rid: 3,
            why:
                Refusal::Conflict {
                    token: 0,
                    version: 2,
                },
        } => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    // The new owner builds on version 2.
    let next = pay(0, tag(3, "c2", 1), "c1", tag(2, "c1", 5));
    assert!(matches!(
        write(&mut s, "c2", 4, vec![next]),
        Msg::WriteOk { rid: 4 }
    ));
}

#[test]
fn a_pay_by_a_non_owner_is_refused() {
    let mut s = TokensNode::new("s1".into(), params());
    // Token 1 starts at c2; c1 tries to pay it.
    let theft = pay(1, tag(2, "c1", 1), "c1", Tag::initial());
    assert!(matches!(
        write(&mut s, "c1", 1, vec![theft]),
        Msg::Refused {
            why: Refusal::NotOwner { token: 1 },
            ..
        }
    ));
}

#[test]
fn a_pays_write_is_durable_before_it_is_sent_and_cleared_when_paid() {
    let mut c = TokensNode::new("c1".into(), params());
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut out = Outbox::default();
    c.on_request(
        0,
        7,
        Request::Pay {
            token: 0,
            to: "c2".into(),
        },
        &mut rng,
        &mut out,
    );
    // Read phase first: nothing written yet.
    assert!(!out
        .records
        .iter()
        .any(|r| matches!(r, Record::Unresolved { .. })));
    let reads: Vec<(String, u64)> = out
        .sends
        .iter()
        .filter_map(|(to, m)| match m {
            Msg::Read { rid, .. } => Some((to.clone(), *rid)),
            _ => None,
        })
        .collect();
    assert_eq!(reads.len(), 3);
    // Two servers answer with the initial state: the pay writes version 2.
    let mut out = Outbox::default();
    for (s, rid) in reads.iter().take(2) {
        let state = faultline_node::protocol::tokens::TokenState {
            tag: Tag::initial(),
            owner: "c1".into(),
        };
        c.on_message(
            1,
            s,
            Msg::ReadOk {
                rid: *rid,
                entries: vec![(0, state)],
            },
            &mut rng,
            &mut out,
        );
    }
    let unresolved: Vec<&WriteEntry> = out
        .records
        .iter()
        .filter_map(|r| match r {
            Record::Unresolved { entry } => Some(entry),
            _ => None,
        })
        .collect();
    assert_eq!(unresolved.len(), 1, "{:?}", out.records);
    assert_eq!(unresolved[0].tag.version, 2);
    let writes: Vec<(String, u64)> = out
        .sends
        .iter()
        .filter_map(|(to, m)| match m {
            Msg::Write { rid, .. } => Some((to.clone(), *rid)),
            _ => None,
        })
        .collect();
    assert_eq!(writes.len(), 3);
    // A majority acknowledges: paid, and the durable record is cleared.
    let mut out = Outbox::default();
    for (s, rid) in writes.iter().take(2) {
        c.on_message(2, s, Msg::WriteOk { rid: *rid }, &mut rng, &mut out);
    }
    assert!(
        matches!(out.replies.as_slice(), [(7, Reply::Paid { token: 0, .. })]),
        "{:?}",
        out.replies
    );
    assert!(
        out.records
            .iter()
            .any(|r| matches!(r, Record::Resolved { token: 0 })),
        "{:?}",
        out.records
    );
}
