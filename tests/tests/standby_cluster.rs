//! The standby bank over real processes: the seed's screens (lookup,
//! overdraft refused, deposit, unknown account, bad input refused), and the
//! seed's own narrative done right: the primary applies a withdrawal of 50,
//! is killed before its reply gets out, the client retries at the standby,
//! and the balance drops by 50 once; the old primary comes back as standby.

use faultline_e2e::{TestCluster, SECRET};
use faultline_node::api::{NodeState, OpReply, Outcome, PutFaults};
use faultline_node::faults::FaultRule;
use faultline_node::protocol::standby::{Answer, Reply, Request, StandbyState};
use std::time::{Duration, Instant};

const EXTRA: &str = "standby:\n  lease_ms: 300\n  op_deadline_ms: 6000\n";

fn cli_ok(c: &TestCluster, args: &[&str]) -> String {
    let out = c.cli(args);
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "{args:?} failed: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn cli_err(c: &TestCluster, args: &[&str]) -> String {
    let out = c.cli(args);
    assert!(!out.status.success(), "{args:?} should fail");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_screens_and_bad_input() {
    let mut c = TestCluster::of_system("standby-screens", "standby", 2, 3, EXTRA);
    c.start_all();
    c.wait_ready(Duration::from_secs(20)).await;
    fn run<'a>(args: &[&'a str]) -> Vec<&'a str> {
        [&["--id", "c1"][..], args].concat()
    }
    assert_eq!(cli_ok(&c, &run(&["lookup", "2"])), "Current balance: 300");
    assert_eq!(
        cli_ok(&c, &run(&["withdraw", "2", "10"])),
        "Current balance: 290"
    );
    let refused = c.cli(&run(&["withdraw", "5", "1000"]));
    assert_eq!(
        String::from_utf8_lossy(&refused.stdout).trim(),
        "Withdraw amount must be less than balance"
    );
    assert!(
        !refused.status.success(),
        "a refused withdrawal is not a success"
    );
    assert_eq!(cli_ok(&c, &run(&["lookup", "5"])), "Current balance: 600");
    assert_eq!(
        cli_ok(&c, &run(&["deposit", "3", "100"])),
        "Current balance: 500"
    );
    let missing = c.cli(&run(&["lookup", "50"]));
    assert_eq!(
        String::from_utf8_lossy(&missing.stdout).trim(),
        "Account not found"
    );
    // Bad input: a clear error, and nothing changes.
    assert!(cli_err(&c, &run(&["withdraw", "2", "-5"])).contains("non-negative"));
    assert!(cli_err(&c, &run(&["withdraw", "2", "1.5"])).contains("whole number"));
    assert!(cli_err(&c, &run(&["deposit", "2", "99999999999999999999"])).contains("limit"));
    assert!(cli_err(&c, &run(&["lookup", "acct2"])).contains("number"));
    assert_eq!(cli_ok(&c, &run(&["lookup", "2"])), "Current balance: 290");
    // Through /ops, an amount above the limit is refused before any server.
    let op: OpReply<Reply> = c
        .op_as(
            "c2",
            &Request::Deposit {
                account: 2,
                amount: u64::MAX,
            },
        )
        .await;
    assert_eq!(op.outcome, Outcome::Failed, "{op:?}");
    // Servers take no client operations.
    let op: OpReply<Reply> = c.op_as("s1", &Request::Lookup { account: 2 }).await;
    assert_eq!(op.outcome, Outcome::Failed, "{op:?}");
    assert_eq!(cli_ok(&c, &run(&["lookup", "2"])), "Current balance: 290");
    // JSON output for scripts.
    let json = cli_ok(&c, &["--json", "--id", "c3", "lookup", "1"]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("--json prints JSON");
    assert_eq!(
        v["reply"]["done"]["answer"]["balance"]["balance"], 10,
        "{v}"
    );
}

async fn server_state(c: &TestCluster, id: &str) -> Option<StandbyState> {
    c.state_as::<StandbyState>(id)
        .await
        .map(|s: NodeState<StandbyState>| s.state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_narrative_applies_the_withdrawal_once() {
    let mut c = TestCluster::of_system("standby-narrative", "standby", 2, 3, EXTRA);
    c.start_all();
    c.wait_ready(Duration::from_secs(20)).await;
    // s1 applies the withdrawal and the standby has it, but its reply never
    // gets out: the primary dies between applying and answering.
    let drop_replies = PutFaults {
        rules: vec![FaultRule {
            kind: "op_reply".into(),
            drop: 1.0,
            ..serde_json::from_str("{}").expect("a rule with defaults")
        }],
        lease_ms: None,
        seed: None,
    };
    let body = serde_json::to_value(&drop_replies).expect("plain data");
    let (status, v) = c
        .send(
            reqwest::Method::PUT,
            "s1",
            "/faults",
            Some(&body),
            Some(SECRET),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let pid = c.pid("s1").expect("s1 runs");
    let withdraw = Request::Withdraw {
        account: 2,
        amount: 50,
    };
    let killer = async {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(5) {
            if let Some(s) = server_state(&c, "s1").await {
                if s.action_id >= 1 && s.peer_acked >= 1 {
                    let _ = std::process::Command::new("kill")
                        .args(["-9", &pid.to_string()])
                        .status();
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    };
    let (op, killed) = tokio::join!(c.op_as::<Request, Reply>("c1", &withdraw), killer);
    assert!(killed, "s1 never applied the withdrawal");
    let Reply::Done {
        id,
        answer,
        server,
        action_id,
        ..
    } = &op.reply
    else {
        panic!("the retry was not answered: {op:?}");
    };
    assert_eq!(*answer, Answer::Balance { balance: 250 }, "{op:?}");
    assert_eq!(server, "s2", "the standby answered the retry");
    assert_eq!(*action_id, 1, "the first outcome, at the first position");
    let look: OpReply<Reply> = c.op_as("c2", &Request::Lookup { account: 2 }).await;
    assert!(
        matches!(
            look.reply,
            Reply::Done {
                answer: Answer::Balance { balance: 250 },
                ..
            }
        ),
        "debited once: {look:?}"
    );
    let s2 = server_state(&c, "s2").await.expect("s2 answers");
    let times = s2.log.iter().flatten().filter(|e| e.id == *id).count();
    assert_eq!(times, 1, "{id} in s2's log");
    assert!(
        s2.deduplicated >= 1,
        "the retry was answered from the table"
    );

    // The old primary comes back as the standby and catches up.
    c.kill("s1");
    c.start("s1");
    let t0 = Instant::now();
    let mut last = None;
    while t0.elapsed() < Duration::from_secs(15) {
        let (a, b) = (server_state(&c, "s1").await, server_state(&c, "s2").await);
        if let (Some(a), Some(b)) = (&a, &b) {
            if a.mode == "standby"
                && b.mode == "primary"
                && a.action_id == b.action_id
                && a.epoch == b.epoch
            {
                break;
            }
        }
        last = a;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s1 = server_state(&c, "s1").await.expect("s1 answers");
    assert_eq!(s1.mode, "standby", "s1 rejoined as standby: {last:?}");
    let op: OpReply<Reply> = c
        .op_as(
            "c3",
            &Request::Deposit {
                account: 2,
                amount: 5,
            },
        )
        .await;
    assert!(
        matches!(
            op.reply,
            Reply::Done {
                answer: Answer::Balance { balance: 255 },
                ..
            }
        ),
        "{op:?}"
    );
}
