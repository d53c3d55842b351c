//! The bank's client verbs, with the seed's words: `lookup ACCT`,
//! `withdraw ACCT N`, `deposit ACCT N`, and `menu`, the seed's interactive
//! menu (1 look up, 2 withdraw, 3 save, 4 exit). Every operation goes to this
//! client node, which finds the primary and fails over by itself.

use super::{AccountId, Answer, Reply, Request, Standby, MAX_AMOUNT};
use crate::api::{OpReply, Outcome};
use crate::cli::{Client, Output};
use std::fmt;
use std::io::{BufRead, Write};

#[derive(clap::Subcommand, Debug)]
pub enum Verb {
    /// Look up an account's balance.
    Lookup {
        #[arg(value_parser = parse_account, allow_hyphen_values = true)]
        account: AccountId,
    },
    /// Withdraw an amount (refused if it exceeds the balance).
    Withdraw {
        #[arg(value_parser = parse_account, allow_hyphen_values = true)]
        account: AccountId,
        #[arg(value_parser = parse_amount, allow_hyphen_values = true)]
        amount: u64,
    },
    /// Deposit ("save") an amount.
    #[command(alias = "save")]
    Deposit {
        #[arg(value_parser = parse_account, allow_hyphen_values = true)]
        account: AccountId,
        #[arg(value_parser = parse_amount, allow_hyphen_values = true)]
        amount: u64,
    },
    /// The seed's menu: 1 look up, 2 withdraw, 3 save, 4 exit.
    Menu,
}

/// An account number: digits only.
pub fn parse_account(s: &str) -> Result<AccountId, String> {
    let t = s.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("account id must be a number, got {s:?}"));
    }
    t.parse()
        .map_err(|_| format!("account id {s:?} is too large"))
}

/// An amount: a non-negative integer up to [`MAX_AMOUNT`].
pub fn parse_amount(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if t.starts_with('-') {
        return Err(format!("amount must be a non-negative integer, got {s:?}"));
    }
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("amount must be a whole number, got {s:?}"));
    }
    match t.parse::<u64>() {
        Ok(n) if n <= MAX_AMOUNT => Ok(n),
        _ => Err(format!("amount {s} is above the limit of {MAX_AMOUNT}")),
    }
}

impl fmt::Display for Answer {
    /// An answer in the seed's words.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Answer::Balance { balance } => write!(f, "Current balance: {balance}"),
            Answer::Overdraft { .. } => write!(f, "Withdraw amount must be less than balance"),
            Answer::TooLarge { balance } => write!(
                f,
                "Deposit would overflow the balance (current balance: {balance}); nothing changed"
            ),
            Answer::NotFound => write!(f, "Account not found"),
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Done { answer, .. } => write!(f, "{answer}"),
            Reply::Failed { error } => write!(f, "{error}"),
            Reply::Unknown { error, .. } => write!(f, "{error}"),
        }
    }
}

fn render(op: &OpReply<Reply>) -> Output {
    let mut out = Client::<Standby>::render(op, Reply::to_string);
    // A refused withdrawal and an unknown account are the bank's definite
    // answers, but the user's operation did not succeed.
    if let Reply::Done { answer, .. } = &op.reply {
        out.ok = matches!(answer, Answer::Balance { .. });
    }
    out
}

pub(super) async fn run(c: &Client<Standby>, verb: Verb) -> anyhow::Result<Output> {
    let request = match verb {
        Verb::Lookup { account } => Request::Lookup { account },
        Verb::Withdraw { account, amount } => Request::Withdraw { account, amount },
        Verb::Deposit { account, amount } => Request::Deposit { account, amount },
        Verb::Menu => return menu(c).await,
    };
    let op = c.op(c.id(), &request).await?;
    Ok(render(&op))
}

const MENU: &str = "\
Welcome to Distributed Bank!
-----
* Enter you operation:      *
*   1: Look up balance     *
*   2: Withdraw an amount of money *
*   3: Save an amount of money  *
*   4: Terminating program  *
-----";

/// The seed's interactive menu, on stdin and stdout, until 4 or EOF.
async fn menu(c: &Client<Standby>) -> anyhow::Result<Output> {
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let mut ask = |prompt: &str| -> anyhow::Result<Option<String>> {
        print!("{prompt}");
        std::io::stdout().flush()?;
        Ok(lines.next().transpose()?.map(|l| l.trim().to_string()))
    };
    let mut done = 0u64;
    loop {
        println!("{MENU}");
        let Some(choice) = ask("Your choice: ")? else {
            break;
        };
        let request = match choice.as_str() {
            "1" => {
                let Some(a) = ask("Enter your account ID: ")? else {
                    break;
                };
                match parse_account(&a) {
                    Ok(account) => Request::Lookup { account },
                    Err(e) => {
                        println!("{e}");
                        continue;
                    }
                }
            }
            "2" | "3" => {
                let Some(a) = ask("Enter your account ID: ")? else {
                    break;
                };
                let account = match parse_account(&a) {
                    Ok(a) => a,
                    Err(e) => {
                        println!("{e}");
                        continue;
                    }
                };
                let prompt = if choice == "2" {
                    "Enter amount your want to withdraw: "
                } else {
                    "Enter amount your want to deposite: "
                };
                let Some(n) = ask(prompt)? else { break };
                let amount = match parse_amount(&n) {
                    Ok(n) => n,
                    Err(e) => {
                        println!("{e}");
                        continue;
                    }
                };
                if choice == "2" {
                    Request::Withdraw { account, amount }
                } else {
                    Request::Deposit { account, amount }
                }
            }
            "4" => break,
            other => {
                println!("Please choose 1, 2, 3 or 4 (got {other:?})");
                continue;
            }
        };
        match c.op(c.id(), &request).await {
            Ok(op) if op.outcome == Outcome::Unknown => println!("unknown outcome: {}", op.reply),
            Ok(op) => println!("{}", op.reply),
            Err(e) => println!("error: {e}"),
        }
        done += 1;
    }
    // End the last prompt's line (input may end without one).
    println!();
    Ok(Output::ok(
        format!("{done} operations"),
        &serde_json::json!({ "operations": done }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_amounts_and_accounts_get_clear_errors() {
        assert_eq!(parse_amount("10"), Ok(10));
        assert_eq!(parse_amount("0"), Ok(0));
        assert!(parse_amount("-5").unwrap_err().contains("non-negative"));
        assert!(parse_amount("1.5").unwrap_err().contains("whole number"));
        assert!(parse_amount("99999999999999999999999")
            .unwrap_err()
            .contains("limit"));
        assert!(parse_amount("1000000000001").unwrap_err().contains("limit"));
        assert_eq!(parse_account("2"), Ok(2));
        assert!(parse_account("acct2").unwrap_err().contains("number"));
        assert!(parse_account("-1").unwrap_err().contains("number"));
    }

    #[test]
    fn answers_in_the_seeds_words() {
        assert_eq!(
            Answer::Balance { balance: 290 }.to_string(),
            "Current balance: 290"
        );
        assert_eq!(Answer::NotFound.to_string(), "Account not found");
        assert_eq!(
            Answer::Overdraft { balance: 600 }.to_string(),
            "Withdraw amount must be less than balance"
        );
    }
}
