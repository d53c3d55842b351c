//! Parsers for the two public history formats of Porcupine's test data (Jepsen etcd logs and
//! EDN key-value logs), the checker's external test: 109 histories with known verdicts, copied
//! under `chaos/tests/data/porcupine/` with a README that specifies both formats.
//!
//! The parsers follow Porcupine's own test parser in meaning (the line position is the time;
//! calls and returns are matched through the process id; a call still open at the end has an
//! unknown outcome) but are strict where it is lenient: a line of no known shape is an error
//! rather than silently skipped, so a damaged file cannot pass for a shorter history. The one
//! deliberate skip is Jepsen's `:info` line, which means "outcome unknown, operation stays open".

use crate::check::history::{Operation, Outcome};
use crate::check::model::{KvInput, KvOp, KvOutput, RegisterInput, RegisterOutput};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ParseError {
    #[error("line {line}: not a known event: {text:?}")]
    Unrecognized { line: usize, text: String },
    #[error("line {line}: process {process} has a call open since line {open_since}")]
    AlreadyOpen {
        line: usize,
        process: u64,
        open_since: usize,
    },
    #[error("line {line}: process {process} returns without an open call")]
    ReturnWithoutCall { line: usize, process: u64 },
    #[error("line {line}: process {process} returns {got} but its open call is {expected}")]
    WrongReturn {
        line: usize,
        process: u64,
        got: String,
        expected: String,
    },
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Register history from a Jepsen etcd log (`jepsen/etcd_NNN.log`), for [`crate::check::Register`].
pub fn parse_jepsen_etcd(
    text: &str,
) -> Result<Vec<Operation<RegisterInput, RegisterOutput>>, ParseError> {
    let mut matcher = Matcher::default();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let bad = || ParseError::Unrecognized {
            line,
            text: raw.to_string(),
        };
        if raw.trim().is_empty() {
            continue;
        }
        let mut words = raw.split_whitespace();
        if (words.next(), words.next(), words.next())
            != (Some("INFO"), Some("jepsen.util"), Some("-"))
        {
            return Err(bad());
        }
        let process: u64 = words.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let kind = words.next().ok_or_else(bad)?;
        let f = words.next().ok_or_else(bad)?;
        let value: Vec<&str> = words.collect();
        let int = |s: &str| s.parse::<i64>().ok();
        let pair = || match value.as_slice() {
            [a, b] => Some((int(a.strip_prefix('[')?)?, int(b.strip_suffix(']')?)?)),
            _ => None,
        };
        let time = i as u64;
        match (kind, f, value.as_slice()) {
            (":invoke", ":read", ["nil"]) => {
                matcher.call(line, process, time, RegisterInput::Read)?
            }
            (":invoke", ":write", [v]) => {
                let v = int(v).ok_or_else(bad)?;
                matcher.call(line, process, time, RegisterInput::Write(v))?
            }
            (":invoke", ":cas", _) => {
                let (from, to) = pair().ok_or_else(bad)?;
                matcher.call(line, process, time, RegisterInput::Cas { from, to })?
            }
            (":ok", ":read", [v]) => {
                let v = if *v == "nil" {
                    None
                } else {
                    Some(int(v).ok_or_else(bad)?)
                };
                matcher.ret(
                    line,
                    process,
                    time,
                    f,
                    Outcome::Ok(RegisterOutput::ReadOk(v)),
                )?
            }
            // The value repeats the argument.
            (":ok", ":write", [v]) if int(v).is_some() => {
                matcher.ret(line, process, time, f, Outcome::Ok(RegisterOutput::WriteOk))?
            }
            (":ok" | ":fail", ":cas", _) if pair().is_some() => {
                let out = if kind == ":ok" {
                    RegisterOutput::CasOk
                } else {
                    RegisterOutput::CasFail
                };
                matcher.ret(line, process, time, f, Outcome::Ok(out))?
            }
            (":fail", ":read", [":timed-out"]) => {
                matcher.ret(line, process, time, f, Outcome::Unknown)?
            }
            // Timed out: the operation stays open and is closed as unknown at the end.
            (":info", ":read" | ":write" | ":cas", [":timed-out"]) => {}
            _ => return Err(bad()),
        }
    }
    Ok(matcher.finish())
}

/// Key-value history from an EDN log (`kv/cNN-{ok,bad}.txt`), for [`crate::check::KeyValue`].
pub fn parse_kv(text: &str) -> Result<Vec<Operation<KvInput, KvOutput>>, ParseError> {
    let mut matcher = Matcher::default();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let bad = || ParseError::Unrecognized {
            line,
            text: raw.to_string(),
        };
        if raw.trim().is_empty() {
            continue;
        }
        let fields = parse_kv_line(raw).ok_or_else(bad)?;
        let time = i as u64;
        match (fields.kind, fields.f, fields.value) {
            (":invoke", ":get", None) => {
                matcher.call(line, fields.process, time, KvInput::get(fields.key))?
            }
            (":invoke", ":put", Some(v)) => {
                matcher.call(line, fields.process, time, KvInput::put(fields.key, v))?
            }
            (":invoke", ":append", Some(v)) => {
                matcher.call(line, fields.process, time, KvInput::append(fields.key, v))?
            }
            (":ok", ":get", Some(v)) => matcher.ret(
                line,
                fields.process,
                time,
                fields.f,
                Outcome::Ok(KvOutput::Value(v.to_string())),
            )?,
            // The value repeats the argument.
            (":ok", ":put" | ":append", Some(_)) => matcher.ret(
                line,
                fields.process,
                time,
                fields.f,
                Outcome::Ok(KvOutput::Done),
            )?,
            _ => return Err(bad()),
        }
    }
    Ok(matcher.finish())
}

/// Reads and parses a Jepsen etcd log.
pub fn load_jepsen_etcd(
    path: &Path,
) -> Result<Vec<Operation<RegisterInput, RegisterOutput>>, ParseError> {
    parse_jepsen_etcd(&read(path)?)
}

/// Reads and parses a key-value EDN log.
pub fn load_kv(path: &Path) -> Result<Vec<Operation<KvInput, KvOutput>>, ParseError> {
    parse_kv(&read(path)?)
}

fn read(path: &Path) -> Result<String, ParseError> {
    std::fs::read_to_string(path).map_err(|source| ParseError::Io {
        path: path.to_path_buf(),
        source,
    })
}

struct KvLine<'a> {
    process: u64,
    kind: &'a str,
    f: &'a str,
    key: &'a str,
    value: Option<&'a str>,
}

/// `{:process 0, :type :invoke, :f :append, :key "0", :value "x 0 0 y"}`; the keys always come
/// in this order. Strings hold no quotes or backslashes in this data, and like Porcupine's
/// greedy regex the value runs to the last quote.
fn parse_kv_line(line: &str) -> Option<KvLine<'_>> {
    let rest = line.strip_prefix("{:process ")?.strip_suffix('}')?;
    let (process, rest) = rest.split_once(", :type ")?;
    let (kind, rest) = rest.split_once(", :f ")?;
    let (f, rest) = rest.split_once(", :key \"")?;
    let (key, value) = rest.split_once("\", :value ")?;
    let value = if value == "nil" {
        None
    } else {
        Some(value.strip_prefix('"')?.strip_suffix('"')?)
    };
    Some(KvLine {
        process: process.parse().ok()?,
        kind,
        f,
        key,
        value,
    })
}

/// Pairs calls and returns through the process id, remembering lines for error messages.
struct Matcher<I, O> {
    ops: Vec<Operation<I, O>>,
    open: HashMap<u64, (usize, usize)>,
}

impl<I, O> Default for Matcher<I, O> {
    fn default() -> Self {
        Matcher {
            ops: Vec::new(),
            open: HashMap::new(),
        }
    }
}

impl<I: OpName, O> Matcher<I, O> {
    fn call(&mut self, line: usize, process: u64, time: u64, input: I) -> Result<(), ParseError> {
        if let Some(&(_, open_since)) = self.open.get(&process) {
            return Err(ParseError::AlreadyOpen {
                line,
                process,
                open_since,
            });
        }
        self.open.insert(process, (self.ops.len(), line));
        self.ops
            .push(Operation::unknown(process, input, time, None));
        Ok(())
    }

    fn ret(
        &mut self,
        line: usize,
        process: u64,
        time: u64,
        f: &str,
        output: Outcome<O>,
    ) -> Result<(), ParseError> {
        let (idx, _) = self
            .open
            .remove(&process)
            .ok_or(ParseError::ReturnWithoutCall { line, process })?;
        let op = &mut self.ops[idx];
        let expected = op.input.op_name();
        if f.strip_prefix(':') != Some(expected) {
            return Err(ParseError::WrongReturn {
                line,
                process,
                got: f.to_string(),
                expected: format!(":{expected}"),
            });
        }
        op.ret = Some(time);
        op.output = output;
        Ok(())
    }

    /// Calls still open (Jepsen `:info`) keep their unknown outcome and get no return.
    fn finish(self) -> Vec<Operation<I, O>> {
        self.ops
    }
}

trait OpName {
    fn op_name(&self) -> &'static str;
}

impl OpName for RegisterInput {
    fn op_name(&self) -> &'static str {
        match self {
            RegisterInput::Read => "read",
            RegisterInput::Write(_) => "write",
            RegisterInput::Cas { .. } => "cas",
        }
    }
}

impl OpName for KvInput {
    fn op_name(&self) -> &'static str {
        match self.op {
            KvOp::Get => "get",
            KvOp::Put(_) => "put",
            KvOp::Append(_) => "append",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jepsen_lines_of_every_shape() {
        let log = "INFO  jepsen.util - 0\t:invoke\t:read\tnil\n\
                   INFO  jepsen.util - 1\t:invoke\t:write\t3\n\
                   INFO  jepsen.util - 2   :invoke :cas    [3 0]\n\
                   INFO  jepsen.util - 0\t:ok\t:read\tnil\n\
                   INFO  jepsen.util - 1\t:ok\t:write\t3\n\
                   INFO  jepsen.util - 2\t:fail\t:cas\t[3 0]\n\
                   INFO  jepsen.util - 0\t:invoke\t:read\tnil\n\
                   INFO  jepsen.util - 0\t:fail\t:read\t:timed-out\n\
                   INFO  jepsen.util - 3\t:invoke\t:write\t4\n\
                   INFO  jepsen.util - 3\t:info\t:write\t:timed-out\n\
                   INFO  jepsen.util - 4\t:invoke\t:cas\t[1 2]\n\
                   INFO  jepsen.util - 4\t:ok\t:cas\t[1 2]\n\
                   INFO  jepsen.util - 5\t:invoke\t:read\tnil\n\
                   INFO  jepsen.util - 5\t:ok\t:read\t4\n";
        let h = parse_jepsen_etcd(log).expect("parses");
        assert_eq!(h.len(), 7);
        assert_eq!(
            h[0],
            Operation::ok(0, RegisterInput::Read, 0, 3, RegisterOutput::ReadOk(None))
        );
        assert_eq!(h[1].output, Outcome::Ok(RegisterOutput::WriteOk));
        assert_eq!(h[2].input, RegisterInput::Cas { from: 3, to: 0 });
        assert_eq!(h[2].output, Outcome::Ok(RegisterOutput::CasFail));
        assert_eq!(h[3], Operation::unknown(0, RegisterInput::Read, 6, Some(7)));
        assert_eq!(
            h[4],
            Operation::unknown(3, RegisterInput::Write(4), 8, None)
        );
        assert_eq!(h[5].output, Outcome::Ok(RegisterOutput::CasOk));
        assert_eq!(h[6].output, Outcome::Ok(RegisterOutput::ReadOk(Some(4))));
    }

    #[test]
    fn jepsen_rejects_garbage_and_mismatches() {
        assert!(matches!(
            parse_jepsen_etcd("INFO  jepsen.util - 0\t:invoke\t:frob\tnil\n"),
            Err(ParseError::Unrecognized { line: 1, .. })
        ));
        assert!(matches!(
            parse_jepsen_etcd("INFO  jepsen.util - 0\t:ok\t:read\tnil\n"),
            Err(ParseError::ReturnWithoutCall {
                line: 1,
                process: 0
            })
        ));
        let mismatch = "INFO  jepsen.util - 0\t:invoke\t:read\tnil\n\
                        INFO  jepsen.util - 0\t:ok\t:write\t1\n";
        assert!(matches!(
            parse_jepsen_etcd(mismatch),
            Err(ParseError::WrongReturn { line: 2, .. })
        ));
        let twice = "INFO  jepsen.util - 0\t:invoke\t:read\tnil\n\
                     INFO  jepsen.util - 0\t:invoke\t:read\tnil\n";
        assert!(matches!(
            parse_jepsen_etcd(twice),
            Err(ParseError::AlreadyOpen {
                line: 2,
                open_since: 1,
                ..
            })
        ));
        assert!(parse_jepsen_etcd("").expect("empty parses").is_empty());
    }

    #[test]
    fn kv_lines() {
        let log = "{:process 9, :type :invoke, :f :append, :key \"0\", :value \"x 9 0 y\"}\n\
                   {:process 7, :type :invoke, :f :get, :key \"5\", :value nil}\n\
                   {:process 9, :type :ok, :f :append, :key \"0\", :value \"x 9 0 y\"}\n\
                   {:process 7, :type :ok, :f :get, :key \"5\", :value \"\"}\n\
                   {:process 1, :type :invoke, :f :put, :key \"5\", :value \"x 1 0 y\"}\n";
        let h = parse_kv(log).expect("parses");
        assert_eq!(h.len(), 3);
        assert_eq!(
            h[0],
            Operation::ok(9, KvInput::append("0", "x 9 0 y"), 0, 2, KvOutput::Done)
        );
        assert_eq!(
            h[1],
            Operation::ok(7, KvInput::get("5"), 1, 3, KvOutput::Value(String::new()))
        );
        assert_eq!(
            h[2],
            Operation::unknown(1, KvInput::put("5", "x 1 0 y"), 4, None)
        );
        assert!(matches!(
            parse_kv("{:process 1, :type :info, :f :get, :key \"5\", :value nil}"),
            Err(ParseError::Unrecognized { line: 1, .. })
        ));
        assert!(matches!(
            parse_kv("{:process 1, :type :invoke, :f :get, :key \"5\", :value \"x\"}"),
            Err(ParseError::Unrecognized { .. })
        ));
    }
}
