//! Every kind of bad cluster file gets one clear error naming the file, the
//! line and the field, with a fix, exit code 2, and nothing starts.

use faultline_e2e::{node, scratch};
use std::path::Path;

const GOOD_NODES: &str = "\
nodes:
  - { id: s1, role: server, listen: 127.0.0.1:17101, admin: 127.0.0.1:19101 }
  - { id: s2, role: server, listen: 127.0.0.1:17102, admin: 127.0.0.1:19102 }
  - { id: s3, role: server, listen: 127.0.0.1:17103, admin: 127.0.0.1:19103 }
  - { id: c1, role: client, listen: 127.0.0.1:17201, admin: 127.0.0.1:19201 }
";

fn header(tls: &str) -> String {
    format!("system: tokens\nsecret: a-long-enough-secret\ntls:\n  dir: {tls}\n")
}

fn server_lines(n: usize) -> String {
    let mut s = String::from("nodes:\n");
    for i in 1..=n {
        s += &format!(
            "  - {{ id: s{i}, role: server, listen: 127.0.0.1:{}, admin: 127.0.0.1:{} }}\n",
            17300 + i,
            19300 + i
        );
    }
    s + "  - { id: c1, role: client, listen: 127.0.0.1:17401, admin: 127.0.0.1:19401 }\n"
}

/// Runs `check` on `text` and returns stderr, asserting exit code 2 and that
/// the message names the file, `line`, `field` and a fix.
fn expect_error(dir: &Path, name: &str, text: &str, line: usize, field: &str, what: &str) {
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(&file, text).expect("write");
    let out = node(&["check", "--cluster", file.to_str().expect("utf8")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{name}: exit code, stderr: {err}"
    );
    assert!(
        out.stdout.is_empty() || !String::from_utf8_lossy(&out.stdout).contains("ok"),
        "{name}"
    );
    let loc = format!("{}:{line}:", file.display());
    assert!(err.contains(&loc), "{name}: expected {loc} in: {err}");
    assert!(
        err.contains(field),
        "{name}: expected field {field} in: {err}"
    );
    assert!(err.contains(what), "{name}: expected {what:?} in: {err}");
    assert!(err.contains("fix:"), "{name}: no fix in: {err}");
    assert_eq!(
        err.trim().lines().count(),
        2,
        "{name}: one error, one fix: {err}"
    );
}

#[test]
fn each_bad_file_gets_its_error() {
    let dir = scratch("badfiles");
    // Certificates for the good nodes, so only the planted fault is wrong.
    let good = format!("{}{GOOD_NODES}", header("certs"));
    std::fs::write(dir.join("good.yaml"), &good).expect("write");
    let out = node(&[
        "certs",
        "--cluster",
        dir.join("good.yaml").to_str().expect("utf8"),
    ]);
    assert!(out.status.success());
    let out = node(&[
        "check",
        "--cluster",
        dir.join("good.yaml").to_str().expect("utf8"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("server (3): s1, s2, s3") && stdout.contains("quorum 2 of 3"),
        "{stdout}"
    );

    // Syntax error: an unclosed flow mapping on line 7.
    let text = good.replace(
        "  - { id: s2, role: server, listen: 127.0.0.1:17102, admin: 127.0.0.1:19102 }",
        "  - { id: s2, role: server, listen: 127.0.0.1:17102",
    );
    let file = dir.join("syntax.yaml");
    std::fs::write(&file, &text).expect("write");
    let out = node(&["check", "--cluster", file.to_str().expect("utf8")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("{}:", file.display())) && err.contains("fix:"),
        "{err}"
    );
    let after = err
        .split(&format!("{}:", file.display()))
        .nth(1)
        .unwrap_or("");
    let line: usize = after
        .split(':')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        (7..=9).contains(&line),
        "no line near the broken mapping: {err}"
    );

    // Unknown field.
    let text = good.replace(
        "role: server, listen: 127.0.0.1:17103",
        "rolle: server, listen: 127.0.0.1:17103",
    );
    expect_error(
        &dir,
        "unknown-field",
        &text,
        8,
        "nodes[2]",
        "unknown field `rolle`",
    );
    // Duplicate id.
    let text = good.replace("id: s3", "id: s2");
    expect_error(
        &dir,
        "duplicate-id",
        &text,
        8,
        "nodes[2].id",
        "duplicate node id",
    );
    // A role the system does not have.
    let text = good.replace("id: s2, role: server", "id: s2, role: leader");
    expect_error(
        &dir,
        "bad-role",
        &text,
        7,
        "nodes[1].role",
        "not a role of system tokens",
    );
    // Two servers, and eight.
    let text = format!("{}{}", header("certs"), server_lines(2));
    expect_error(
        &dir,
        "two-servers",
        &text,
        5,
        "nodes",
        "needs 3..7 servers, this file has 2",
    );
    let text = format!("{}{}", header("certs"), server_lines(8));
    expect_error(&dir, "eight-servers", &text, 5, "nodes", "this file has 8");
    // Numbers that once passed and then hurt (issue 6): each has a range.
    for (name, section, line, field, what) in [
        (
            "keep-alive-zero",
            "transport:\n  keep_alive_ms: 0\n",
            6,
            "transport.keep_alive_ms",
            "0 ms is outside 10..=600000 ms",
        ),
        (
            "a-trillion-tokens",
            "tokens:\n  tokens: 1000000000000\n",
            6,
            "tokens.tokens",
            "1000000000000 tokens is outside 1..=100000",
        ),
        (
            "deadline-that-wraps",
            "tokens:\n  op_deadline_ms: 18446744073709552\n",
            6,
            "tokens.op_deadline_ms",
            "outside 1..=3600000 ms",
        ),
        // The system's section is read by the system with the same errors.
        (
            "section-typo",
            "tokens:\n  tokenz: 5\n",
            6,
            "field `tokens`",
            "unknown field `tokenz`",
        ),
        (
            "section-bad-bug",
            "tokens:\n  bugs: { double_apply: true }\n",
            6,
            "tokens.bugs",
            "unknown field `double_apply`",
        ),
        (
            "top-level-typo",
            "tokenz:\n  tokens: 5\n",
            5,
            "tokenz",
            "unknown field `tokenz`",
        ),
    ] {
        let text = format!("{}{section}{GOOD_NODES}", header("certs"));
        expect_error(&dir, name, &text, line, field, what);
    }
    // An address that does not parse.
    let text = good.replace("listen: 127.0.0.1:17201", "listen: localhost:http");
    expect_error(
        &dir,
        "bad-address",
        &text,
        9,
        "nodes[3].listen",
        "not an IP socket address",
    );
    // A missing certificate.
    let text = format!("{}{GOOD_NODES}", header("no-such-certs"));
    expect_error(
        &dir,
        "missing-cert",
        &text,
        4,
        "tls.dir",
        "missing certificate",
    );
    // Nothing starts from a bad file.
    let out = node(&[
        "run",
        "--cluster",
        dir.join("missing-cert.yaml").to_str().expect("utf8"),
        "--id",
        "s1",
    ]);
    assert_eq!(out.status.code(), Some(2));
}
