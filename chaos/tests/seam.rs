//! The system seam holds: outside the registries and each system's own
//! folders, no source file of the node or the controller names the token
//! system or the standby bank. Comments may use them as examples; code may
//! not. Test modules (`#[cfg(test)]`) may use them as fixtures.

use std::path::{Path, PathBuf};

/// Files and folders allowed to name a system: its own folders and the two
/// registries.
const ALLOWED: &[&str] = &[
    "node/src/protocol/tokens/",
    "chaos/src/systems/tokens/",
    "node/src/protocol/standby/",
    "chaos/src/systems/standby/",
    "node/src/system.rs",
    "chaos/src/systems/mod.rs",
    // `pub mod tokens;`: the one line that brings the folder into the crate.
    "node/src/protocol/mod.rs",
];

/// What naming the token system looks like in code.
const NAMES: &[&str] = &[
    "tokens",
    "Tokens",
    "gettokens",
    "TokensNode",
    // As a string: `transform` is also a CSS and SVG attribute.
    "\"transform\"",
    "errors_as_acks",
    "read_without_write_back",
    "skip_owner_check",
    "stale_tag_cache",
    // The standby bank.
    "standby",
    "Standby",
    "StandbyNode",
    "no_dedup_on_failover",
    "takeover_on_missed_heartbeat",
    "ack_before_standby",
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn is_word(line: &str, name: &str) -> bool {
    line.match_indices(name).any(|(i, _)| {
        let before = line[..i].chars().next_back();
        let after = line[i + name.len()..].chars().next();
        let part = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        !part(before) && !part(after)
    })
}

/// Whether `file` is `<module>/tests.rs` that `<module>.rs` declares as a
/// test module (`#[cfg(test)]` then `mod tests;`): test code, like what
/// follows a `#[cfg(test)]` inside a file.
fn is_test_module_file(file: &Path) -> bool {
    if file.file_name().is_none_or(|n| n != "tests.rs") {
        return false;
    }
    let Some(dir) = file.parent() else {
        return false;
    };
    let parent = dir.with_extension("rs");
    let text = std::fs::read_to_string(parent).unwrap_or_default();
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    lines
        .windows(2)
        .any(|w| w[0] == "#[cfg(test)]" && w[1] == "mod tests;")
}

/// The code lines of a file that name the token system, as `file:line: text`.
fn offending(root: &Path, file: &Path) -> Vec<String> {
    if is_test_module_file(file) {
        return Vec::new();
    }
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let rel = file
        .strip_prefix(root)
        .unwrap_or(file)
        .display()
        .to_string();
    let mut out = Vec::new();
    let mut after_cfg_test = false;
    for (i, line) in text.lines().enumerate() {
        let code = line.trim_start();
        if code.starts_with("#[cfg(test)]") {
            after_cfg_test = true;
            continue;
        }
        // Everything after a test module's attribute is test code.
        if after_cfg_test {
            break;
        }
        if code.starts_with("//") {
            continue;
        }
        let code = code.split(" //").next().unwrap_or(code);
        if let Some(name) = NAMES.iter().find(|n| is_word(code, n)) {
            out.push(format!("{rel}:{}: names {name:?}: {}", i + 1, line.trim()));
        }
    }
    out
}

#[test]
fn no_shared_file_names_the_token_system() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    sources(&root.join("node/src"), &mut files);
    sources(&root.join("chaos/src"), &mut files);
    assert!(files.len() > 40, "found only {} source files", files.len());
    let mut found = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&root).unwrap_or(f).display().to_string();
        if ALLOWED.iter().any(|a| rel.starts_with(a)) {
            continue;
        }
        found.extend(offending(&root, f));
    }
    assert!(
        found.is_empty(),
        "shared code names the token system (move it behind the seam):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_itself_sees_code_and_skips_comments() {
    let dir = std::env::temp_dir().join(format!("seam-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let f = dir.join("x.rs");
    std::fs::write(
        &f,
        "// tokens in a comment are fine\nlet s = \"tokens\";\nlet tokenset = 1;\n#[cfg(test)]\nmod tests { tokens }\n",
    )
    .expect("write");
    let hits = offending(&dir, &f);
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert!(hits[0].contains(":2:"), "{hits:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
