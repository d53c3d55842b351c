//! Shrinking a failing token's history to a counter-example a person can read.
//!
//! Removing operations from a history can make it fail for a new reason (drop the pay that
//! explains a later read and the read looks wrong), so only removals that provably keep the
//! failure the history's own are used. Each is sound, not just plausible:
//! 1. Tail cut: keep the operations called before some time T, where every kept operation with
//!    a known outcome returned before T. Any linearization of the whole history, cut where the
//!    first dropped operation sits and with unknown operations placed later simply left out,
//!    linearizes the kept part; so the kept part failing means the whole fails. Failing
//!    prefixes nest, so the shortest one is found by bisection.
//! 2. Head cut at an acknowledged pay P of version V: every linearization puts P right after
//!    state (V-1, P's payer), whatever came before. Keep P, every unknown operation (any may
//!    land after P), the acknowledged pays of later versions (always after P) and the reads
//!    and refused pays called after P returned (always after P); start from (V-1, payer). A
//!    linearization of the whole, from P on and without what was dropped, linearizes this, so
//!    this failing means the whole fails. Cutting at a later pay only drops more, so the
//!    latest P that still fails is found by bisection over the versions.
//! 3. Read removal: reads and refused pays change no state, so a linearization of the whole
//!    is one of the whole minus any of them. Removed in halving chunks (delta debugging) while
//!    the rest still fails.
//!
//! Unknown pays are never removed: one may be what makes a later read legal.
//! Everything runs against a deadline; when it passes the shrinking stops where it is, which
//! leaves a larger but still correct counter-example.

use super::linearizable::TokOp;
use super::model::TokenId;
use super::model::{Token, TokenOp, TokenOutput, TokenState};
use crate::check::{check, CheckOptions, CheckResult, Counterexample, Verdict};
use std::time::{Duration, Instant};

pub(crate) struct Shrunk {
    /// The state the listed operations start from.
    pub init: TokenState,
    /// Indices into the full history, in call order.
    pub ops: Vec<usize>,
    /// Operations dropped by the head cut: they came before the first listed pay or could
    /// not matter after it; `init` is the state that pay started from.
    pub folded: usize,
    /// Operations called after the failure, left out.
    pub cut_after: usize,
    /// Reads and refused pays removed from the middle.
    pub reads_removed: usize,
    /// The search of the shrunk history, with indices into the full history.
    pub counterexample: Option<Counterexample>,
    /// False when the deadline stopped the shrinking early.
    pub finished: bool,
}

struct Shrinker<'h> {
    history: &'h [TokOp],
    token: TokenId,
    deadline: Instant,
    finished: bool,
}

/// Most searches one shrink may run, whatever the deadline says.
const MAX_SEARCHES: usize = 10_000;

impl Shrinker<'_> {
    fn op(&self, i: usize) -> Option<&TokOp> {
        self.history.get(i)
    }

    fn model(&self, init: &TokenState) -> Token {
        Token::new(
            [(self.token, init.clone())],
            TokenState {
                version: 0,
                owner: String::new(),
            },
        )
    }

    /// Searches the sub-history `ops` from `init` for at least `floor` or until the deadline.
    fn search(&mut self, init: &TokenState, ops: &[usize], floor: Duration) -> Option<CheckResult> {
        let left = self
            .deadline
            .saturating_duration_since(Instant::now())
            .max(floor);
        if left.is_zero() {
            self.finished = false;
            return None;
        }
        let sub: Vec<TokOp> = ops.iter().filter_map(|&i| self.op(i).cloned()).collect();
        check(
            &self.model(init),
            &sub,
            &CheckOptions::with_time_limit(left),
        )
        .ok()
    }

    /// Whether the sub-history fails from `init`: None when the search could not tell in time.
    fn fails(&mut self, init: &TokenState, ops: &[usize], searches: &mut usize) -> Option<bool> {
        if *searches >= MAX_SEARCHES {
            self.finished = false;
            return None;
        }
        *searches += 1;
        let r = self.search(init, ops, Duration::ZERO)?;
        match r.verdict {
            Verdict::Invalid => Some(true),
            Verdict::Valid => Some(false),
            Verdict::Unknown => {
                self.finished = false;
                None
            }
        }
    }
}

fn read_only(op: &TokOp) -> bool {
    matches!(
        (&op.input.op, op.output.known()),
        (TokenOp::Read, Some(_))
            | (TokenOp::Owns { .. }, Some(_))
            | (TokenOp::Pay { .. }, Some(TokenOutput::NotOwned))
    )
}

/// Shrinks the failing history of `token` (`part`: its operations' indices into `history`,
/// which starts from `init`).
pub(crate) fn shrink(
    history: &[TokOp],
    part: &[usize],
    token: TokenId,
    init: TokenState,
    deadline: Instant,
) -> Shrunk {
    let mut s = Shrinker {
        history,
        token,
        deadline,
        finished: true,
    };
    let mut searches = 0usize;
    let mut order: Vec<usize> = part
        .iter()
        .copied()
        .filter(|&i| s.op(i).is_some())
        .collect();
    order.sort_by_key(|&i| (s.op(i).map_or(0, |o| o.call), i));
    let total = order.len();

    // 1. Tail cut.
    let cuts = tail_cuts(&s, &order);
    let (mut lo, mut hi) = (0usize, cuts.len().saturating_sub(1));
    while lo < hi {
        let mid = (lo + hi) / 2;
        let len = cuts.get(mid).copied().unwrap_or(total);
        if s.fails(&init, &order[..len], &mut searches) == Some(true) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let kept_len = cuts.get(hi).copied().unwrap_or(total);
    order.truncate(kept_len);
    let cut_after = total - kept_len;

    // 2. Head cut.
    let (mut init_now, mut current, mut folded) = (init.clone(), order.clone(), 0usize);
    let mut pays: Vec<(u64, usize)> = order
        .iter()
        .filter_map(|&i| match s.op(i)?.output.known()? {
            TokenOutput::Paid { version } => Some((*version, i)),
            _ => None,
        })
        .collect();
    pays.sort_unstable();
    let (mut lo, mut hi) = (0usize, pays.len());
    let mut best = None;
    while lo < hi {
        let mid = (lo + hi) / 2;
        let cut = pays.get(mid).and_then(|&(v, p)| head_cut(&s, &order, v, p));
        let failing = match &cut {
            Some((state, sub)) => s.fails(state, sub, &mut searches) == Some(true),
            None => false,
        };
        if failing {
            best = cut;
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if let Some((state, sub)) = best {
        folded = current.len() - sub.len();
        init_now = state;
        current = sub;
    }

    // 3. Read removal, in halving chunks.
    let mut reads_removed = 0usize;
    let mut chunk = current.len().div_ceil(2).max(1);
    for _ in 0..(2 * current.len() + 64) {
        let reads: Vec<usize> = current
            .iter()
            .copied()
            .filter(|&i| s.op(i).is_some_and(read_only))
            .collect();
        if reads.is_empty() || !s.finished {
            break;
        }
        let mut removed = false;
        for group in reads.chunks(chunk.min(reads.len()).max(1)) {
            let candidate: Vec<usize> = current
                .iter()
                .copied()
                .filter(|i| !group.contains(i))
                .collect();
            if candidate.len() == current.len() {
                continue;
            }
            if s.fails(&init_now, &candidate, &mut searches) == Some(true) {
                reads_removed += current.len() - candidate.len();
                current = candidate;
                removed = true;
            }
        }
        if !removed {
            if chunk == 1 {
                break;
            }
            chunk = chunk.div_ceil(2);
        }
    }

    // The search of the shrunk history, for what could not be placed. It is small, so it
    // gets a second even when shrinking used up the deadline.
    let counterexample = s
        .search(&init_now, &current, Duration::from_secs(1))
        .and_then(|r| r.counterexample)
        .map(|cx| remap(cx, &current));

    Shrunk {
        init: init_now,
        ops: current,
        folded,
        cut_after,
        reads_removed,
        counterexample,
        finished: s.finished,
    }
}

/// Lengths `j` such that the first `j` operations (in call order) form a tail cut: every kept
/// operation with a known outcome returned before the first dropped one was called. Ascending;
/// the last is the whole history.
fn tail_cuts(s: &Shrinker, order: &[usize]) -> Vec<usize> {
    let mut cuts = Vec::new();
    let mut max_ret: Option<u64> = None;
    for (j, &i) in order.iter().enumerate() {
        let Some(op) = s.op(i) else { continue };
        if j > 0 && max_ret.is_none_or(|r| r < op.call) {
            cuts.push(j);
        }
        if op.output.is_known() {
            max_ret = max_ret.max(op.ret);
        }
    }
    cuts.push(order.len());
    cuts
}

/// The head cut at pay `p` of version `v` (see the module docs): the state before it and the
/// operations kept, in call order. None if `p` is not a pay.
fn head_cut(s: &Shrinker, order: &[usize], v: u64, p: usize) -> Option<(TokenState, Vec<usize>)> {
    let pay = s.op(p)?;
    let TokenOp::Pay { from, .. } = &pay.input.op else {
        return None;
    };
    let paid_at = pay.ret?;
    let state = TokenState {
        version: v.checked_sub(1)?,
        owner: from.clone(),
    };
    let kept = order
        .iter()
        .copied()
        .filter(|&i| {
            let Some(op) = s.op(i) else { return false };
            i == p
                || match op.output.known() {
                    None => true,
                    Some(TokenOutput::Paid { version }) => *version > v,
                    Some(_) => op.call > paid_at,
                }
        })
        .collect();
    Some((state, kept))
}

fn remap(mut cx: Counterexample, ops: &[usize]) -> Counterexample {
    let map = |i: usize| ops.get(i).copied().unwrap_or(usize::MAX);
    cx.prefix = cx.prefix.iter().map(|&i| map(i)).collect();
    for step in &mut cx.prefix_tail {
        step.op = map(step.op);
    }
    for u in &mut cx.unplaced {
        u.op = map(u.op);
    }
    cx
}

#[cfg(test)]
mod tests {
    use super::super::model::TokenInput;
    use super::*;
    use crate::check::Operation;

    fn pay(from: &str, to: &str, call: u64, ret: u64, v: Option<u64>) -> TokOp {
        let input = TokenInput {
            token: 0,
            op: TokenOp::Pay {
                from: from.into(),
                to: to.into(),
            },
        };
        match v {
            Some(version) => Operation::ok(call, input, call, ret, TokenOutput::Paid { version }),
            None => Operation::unknown(call, input, call, Some(ret)),
        }
    }

    fn read(owner: &str, v: u64, call: u64, ret: u64) -> TokOp {
        Operation::ok(
            call,
            TokenInput {
                token: 0,
                op: TokenOp::Read,
            },
            call,
            ret,
            TokenOutput::State(TokenState {
                version: v,
                owner: owner.into(),
            }),
        )
    }

    fn st(v: u64, owner: &str) -> TokenState {
        TokenState {
            version: v,
            owner: owner.into(),
        }
    }

    #[test]
    fn a_long_history_shrinks_to_the_lost_pay_and_the_stale_read() {
        // A chain of pays between a and b with reads in between, then a pay to c that is
        // acknowledged and a read that still shows the old owner, then more noise.
        let mut h = Vec::new();
        let mut v = 1;
        let mut t = 0;
        for i in 0..40 {
            let (from, to) = if i % 2 == 0 { ("a", "b") } else { ("b", "a") };
            v += 1;
            h.push(pay(from, to, t, t + 5, Some(v)));
            h.push(read(to, v, t + 6, t + 8));
            t += 10;
        }
        // Owner is "a" at version 41.
        h.push(pay("a", "c", t, t + 5, Some(v + 1)));
        h.push(read("a", v, t + 10, t + 12));
        h.push(read("a", v, t + 20, t + 22));
        h.push(pay("c", "a", t + 30, t + 35, None));
        let part: Vec<usize> = (0..h.len()).collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        let s = shrink(&h, &part, 0, st(1, "a"), deadline);
        assert!(s.finished);
        assert_eq!(s.init, st(v, "a"));
        assert_eq!(s.ops, vec![80, 81], "{:?}", s.ops);
        let cx = s.counterexample.expect("shrunk history still fails");
        assert!(cx.unplaced.iter().any(|u| u.op == 81));
    }

    /// The cuts must never turn a linearizable history into a failing one: on histories that
    /// are linearizable by construction, with unknown outcomes, every cut stays linearizable.
    #[test]
    fn cuts_of_linearizable_histories_stay_linearizable() {
        use super::super::generate::{token_history, TokenWorkload};
        for seed in 0..20 {
            let workload = TokenWorkload {
                tokens: 3,
                clients: 4,
                ops: 120,
                unknown_rate: 0.15,
                read_rate: 0.4,
                max_latency: 30,
            };
            let (model, h) = token_history(&workload, seed);
            for token in 0..3 {
                let init = model.initial_state(token);
                let mut s = Shrinker {
                    history: &h,
                    token,
                    deadline: Instant::now() + Duration::from_secs(30),
                    finished: true,
                };
                let mut order: Vec<usize> = (0..h.len())
                    .filter(|&i| h[i].input.token == token)
                    .collect();
                order.sort_by_key(|&i| (h[i].call, i));
                let mut n = 0;
                for len in tail_cuts(&s, &order) {
                    assert_eq!(s.fails(&init, &order[..len], &mut n), Some(false));
                }
                for &i in &order {
                    let Some(TokenOutput::Paid { version }) = h[i].output.known() else {
                        continue;
                    };
                    let (state, sub) = head_cut(&s, &order, *version, i).expect("a pay");
                    assert_eq!(
                        s.fails(&state, &sub, &mut n),
                        Some(false),
                        "seed {seed} token {token} cut at op {i}"
                    );
                }
            }
        }
    }

    #[test]
    fn an_unknown_pay_before_the_failure_does_not_stop_the_head_cut() {
        let h = vec![
            pay("a", "b", 0, 5, None),
            pay("a", "b", 10, 15, Some(2)),
            read("b", 2, 20, 22),
            pay("b", "a", 30, 35, Some(3)),
            read("b", 2, 40, 42),
        ];
        let s = shrink(
            &h,
            &[0, 1, 2, 3, 4],
            0,
            st(1, "a"),
            Instant::now() + Duration::from_secs(30),
        );
        assert_eq!(s.init, st(2, "b"));
        assert_eq!(s.ops, vec![0, 3, 4]);
    }

    #[test]
    fn unknown_pays_are_kept_and_only_needless_reads_go() {
        let h = vec![
            pay("a", "b", 0, 5, None),
            read("a", 1, 10, 12),
            read("b", 2, 20, 22),
            read("a", 1, 30, 32),
        ];
        let s = shrink(
            &h,
            &[0, 1, 2, 3],
            0,
            st(1, "a"),
            Instant::now() + Duration::from_secs(30),
        );
        // The unknown pay explains the read of b, the last read of a is the failure, and the
        // first read of a is not needed.
        assert_eq!(s.ops, vec![0, 2, 3]);
        assert_eq!(s.init, st(1, "a"));
    }
}
