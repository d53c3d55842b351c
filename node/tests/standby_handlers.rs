//! The standby bank's handlers one at a time: a message in, the expected
//! sends, replies and durable records out.

use faultline_node::protocol::standby::{
    simulation, Answer, Bugs, Entry, Epoch, Msg, OpResult, Record, Request, RequestId, StandbyNode,
};
use faultline_node::protocol::{Core, Outbox};
use rand::SeedableRng;
use std::sync::Arc;

fn node(id: &str) -> StandbyNode {
    StandbyNode::new(id.into(), Arc::new(simulation::params(Bugs::default())))
}

fn msg(n: &mut StandbyNode, now: u64, from: &str, m: Msg) -> Outbox<StandbyNode> {
    let mut out = Outbox::default();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    n.on_message(now, &from.to_string(), m, &mut rng, &mut out);
    out
}

fn id(client: &str, seq: u64) -> RequestId {
    RequestId {
        client: client.into(),
        seq,
    }
}

fn epoch0() -> Epoch {
    Epoch {
        n: 0,
        primary: "s1".into(),
        standby: Some("s2".into()),
    }
}

fn withdraw(tag: u64, seq: u64) -> Msg {
    Msg::Op {
        tag,
        id: id("c1", seq),
        request: Request::Withdraw {
            account: 2,
            amount: 50,
        },
    }
}

#[test]
fn a_write_is_logged_shipped_and_answered_only_when_the_standby_has_it() {
    let mut s1 = node("s1");
    let out = msg(&mut s1, 10, "c1", withdraw(7, 1));
    let entry = Entry {
        action_id: 1,
        epoch: 0,
        id: id("c1", 1),
        request: Request::Withdraw {
            account: 2,
            amount: 50,
        },
        answer: Answer::Balance { balance: 250 },
    };
    assert_eq!(out.records, vec![Record::Entry(entry.clone())]);
    assert_eq!(
        out.sends,
        vec![(
            "s2".to_string(),
            Msg::Replicate {
                epoch: epoch0(),
                entries: vec![entry],
                probe: 0
            }
        )]
    );
    assert!(out.replies.is_empty());
    let out = msg(
        &mut s1,
        20,
        "s2",
        Msg::ReplicateAck {
            epoch: 0,
            applied: 1,
            probe: 0,
        },
    );
    assert_eq!(
        out.sends,
        vec![(
            "c1".to_string(),
            Msg::OpReply {
                tag: 7,
                result: OpResult::Done {
                    answer: Answer::Balance { balance: 250 },
                    epoch: 0,
                    action_id: 1
                }
            }
        )]
    );
    assert!(out.records.is_empty());
}

#[test]
fn a_retry_gets_the_first_outcome_and_is_not_applied_again() {
    let mut s1 = node("s1");
    msg(&mut s1, 10, "c1", withdraw(7, 1));
    msg(
        &mut s1,
        20,
        "s2",
        Msg::ReplicateAck {
            epoch: 0,
            applied: 1,
            probe: 0,
        },
    );
    let out = msg(&mut s1, 30, "c1", withdraw(8, 1));
    assert!(out.records.is_empty(), "nothing new is logged");
    assert_eq!(
        out.sends,
        vec![(
            "c1".to_string(),
            Msg::OpReply {
                tag: 8,
                result: OpResult::Done {
                    answer: Answer::Balance { balance: 250 },
                    epoch: 0,
                    action_id: 1
                }
            }
        )]
    );
    assert_eq!(s1.state().deduplicated, 1);
}

#[test]
fn the_standby_applies_in_order_redirects_clients_and_fences_old_epochs() {
    let mut s2 = node("s2");
    let entry = |at: u64, seq: u64, balance: i64| Entry {
        action_id: at,
        epoch: 0,
        id: id("c1", seq),
        request: Request::Withdraw {
            account: 2,
            amount: 50,
        },
        answer: Answer::Balance { balance },
    };
    // Position 2 before 1 is not applied; the ack says what is.
    let out = msg(
        &mut s2,
        10,
        "s1",
        Msg::Replicate {
            epoch: epoch0(),
            entries: vec![entry(2, 2, 200)],
            probe: 3,
        },
    );
    assert!(out.records.is_empty());
    assert_eq!(
        out.sends,
        vec![(
            "s1".to_string(),
            Msg::ReplicateAck {
                epoch: 0,
                applied: 0,
                probe: 3
            }
        )]
    );
    let out = msg(
        &mut s2,
        20,
        "s1",
        Msg::Replicate {
            epoch: epoch0(),
            entries: vec![entry(1, 1, 250), entry(2, 2, 200)],
            probe: 4,
        },
    );
    assert_eq!(out.records.len(), 2);
    assert_eq!(s2.state().action_id, 2);
    // A client that asks the standby is sent to the primary.
    let out = msg(&mut s2, 30, "c1", withdraw(1, 9));
    assert_eq!(
        out.sends,
        vec![(
            "c1".to_string(),
            Msg::OpReply {
                tag: 1,
                result: OpResult::NotPrimary {
                    primary: Some("s1".into())
                }
            }
        )]
    );
    // A snapshot of a newer epoch from s1 moves s2 on; then s1's old epoch
    // is fenced.
    let mut bank =
        faultline_node::protocol::standby::Bank::new(simulation::params(Bugs::default()).accounts);
    bank.action_id = 3;
    let newer = Epoch {
        n: 2,
        primary: "s1".into(),
        standby: Some("s2".into()),
    };
    // A stale copy (older than what s2 holds) is ignored; a newer state of
    // the log it follows is installed.
    let mut stale = bank.clone();
    stale.action_id = 1;
    let out = msg(
        &mut s2,
        35,
        "s1",
        Msg::Snapshot {
            epoch: newer.clone(),
            bank: stale,
            nonce: None,
        },
    );
    assert!(
        out.records.is_empty() && out.sends.is_empty(),
        "{:?}",
        out.sends
    );
    assert_eq!(s2.state().action_id, 2);
    msg(
        &mut s2,
        40,
        "s1",
        Msg::Snapshot {
            epoch: newer.clone(),
            bank,
            nonce: None,
        },
    );
    assert_eq!(s2.state().action_id, 3);
    let out = msg(
        &mut s2,
        50,
        "s1",
        Msg::Replicate {
            epoch: epoch0(),
            entries: vec![],
            probe: 5,
        },
    );
    assert_eq!(
        out.sends,
        vec![("s1".to_string(), Msg::Fenced { epoch: newer })]
    );
}

#[test]
fn operations_from_nodes_that_are_not_their_client_change_nothing() {
    let mut s1 = node("s1");
    // s2 is not a client; c2 may not speak for c1.
    assert!(msg(&mut s1, 10, "s2", withdraw(1, 1)).sends.is_empty());
    assert!(msg(&mut s1, 10, "c2", withdraw(1, 1)).sends.is_empty());
    assert_eq!(s1.state().action_id, 0);
}

#[test]
fn a_witness_promises_once_per_number_and_accepts_what_it_promised() {
    let mut c1 = node("c1");
    // s2 proposes odd numbers, s1 even ones.
    let out = msg(&mut c1, 10, "s2", Msg::Prepare { n: 1 });
    assert_eq!(out.records, vec![Record::Promised(1)]);
    assert_eq!(
        out.sends,
        vec![(
            "s2".to_string(),
            Msg::Promise {
                n: 1,
                accepted: epoch0()
            }
        )]
    );
    // The same number again (a duplicate) gets the promise again.
    let again = msg(&mut c1, 15, "s2", Msg::Prepare { n: 1 });
    assert!(again.records.is_empty());
    assert!(matches!(again.sends[..], [(_, Msg::Promise { n: 1, .. })]));
    // A number of the wrong parity is not s1's to propose.
    assert!(msg(&mut c1, 18, "s1", Msg::Prepare { n: 1 })
        .sends
        .is_empty());
    // s1's higher number wins the promise; s2's accept of 1 is then refused.
    let out = msg(&mut c1, 20, "s1", Msg::Prepare { n: 2 });
    assert_eq!(out.records, vec![Record::Promised(2)]);
    let one = Epoch {
        n: 1,
        primary: "s2".into(),
        standby: None,
    };
    let out = msg(&mut c1, 25, "s2", Msg::Accept { epoch: one });
    assert!(out.records.is_empty());
    assert_eq!(
        out.sends,
        vec![(
            "s2".to_string(),
            Msg::Nack {
                n: 1,
                promised: 2,
                accepted: epoch0()
            }
        )]
    );
    let chosen = Epoch {
        n: 2,
        primary: "s1".into(),
        standby: None,
    };
    let out = msg(
        &mut c1,
        30,
        "s1",
        Msg::Accept {
            epoch: chosen.clone(),
        },
    );
    assert_eq!(out.records, vec![Record::Accepted(chosen.clone())]);
    assert_eq!(
        out.sends,
        vec![(
            "s1".to_string(),
            Msg::Accepted {
                epoch: chosen.clone()
            }
        )]
    );
    // An accept for an epoch led by someone else than its sender is refused.
    let forged = Epoch {
        n: 5,
        primary: "s1".into(),
        standby: None,
    };
    assert!(msg(&mut c1, 40, "s2", Msg::Accept { epoch: forged })
        .sends
        .is_empty());
    assert_eq!(c1.state().epoch, chosen);
}
