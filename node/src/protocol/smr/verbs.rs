//! The database's client verbs, with the seed's words: `list`, `view SITE`,
//! `edit SITE N`, `add SITE ZIP`, `quit`, and `menu`, the seed's
//! interactive menu ([l] [v] [e] [n] [q]). A site name may be several
//! words; `edit` and `add` take the last word as the availability or ZIP.
//! Bad input (a ZIP with letters, a negative availability, a backtick in a
//! name) gets the database's own error before anything is sent.

use super::db::{Availability, Command, DbError};
use super::{Reply, Request, Smr};
use crate::api::{OpReply, Outcome};
use crate::cli::{Client, Output};
use std::fmt;
use std::io::{BufRead, Write};

#[derive(clap::Subcommand, Debug)]
pub enum Verb {
    /// Every site, sorted by name.
    List,
    /// One site's availability.
    View {
        #[arg(required = true, num_args = 1.., allow_hyphen_values = true)]
        site: Vec<String>,
    },
    /// Set a site's availability (a non-negative integer, or true/false).
    Edit {
        /// The site's name, then the availability.
        #[arg(required = true, num_args = 2.., allow_hyphen_values = true)]
        words: Vec<String>,
    },
    /// Add a site with its ZIP code (availability 0).
    #[command(alias = "new")]
    Add {
        /// The site's name, then its ZIP code.
        #[arg(required = true, num_args = 2.., allow_hyphen_values = true)]
        words: Vec<String>,
    },
    /// Leave the order; the next command joins again.
    Quit,
    /// The seed's menu: [l] list, [v] view, [e] edit, [n] new site, [q] quit.
    Menu,
}

/// Splits `words` into a site name and its last word.
fn site_and_last(words: &[String]) -> Result<(String, String), String> {
    match words.split_last() {
        Some((last, site)) if !site.is_empty() => Ok((site.join(" "), last.clone())),
        _ => Err("give the site's name and then one more word".into()),
    }
}

/// The command of a verb's words, checked as the database checks it.
pub fn command(verb: &Verb) -> Result<Option<Request>, DbError> {
    let c = match verb {
        Verb::List => Command::List,
        Verb::View { site } => Command::View {
            site: site.join(" "),
        },
        Verb::Edit { words } => {
            let (site, n) = site_and_last(words).map_err(DbError::BadAvailability)?;
            Command::Edit {
                site,
                availability: n.parse::<Availability>()?,
            }
        }
        Verb::Add { words } => {
            let (site, zip) = site_and_last(words).map_err(DbError::BadZip)?;
            Command::Add { site, zip }
        }
        Verb::Quit => return Ok(Some(Request::Quit)),
        Verb::Menu => return Ok(None),
    };
    c.validate()?;
    Ok(Some(Request::Command(c)))
}

impl fmt::Display for Reply {
    /// The seed's output lines, or the error in words.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Done { lines, .. } => f.write_str(&lines.join("\n")),
            Reply::Refused { error, .. } => write!(f, "{error}"),
            Reply::Left => f.write_str("Goodbye."),
            Reply::Unknown { error } | Reply::Failed { error } => f.write_str(error),
        }
    }
}

fn render(op: &OpReply<Reply>) -> Output {
    let mut out = Client::<Smr>::render(op, Reply::to_string);
    // Refused input was ordered (or not) but the user's command failed.
    if matches!(op.reply, Reply::Refused { .. }) {
        out.ok = false;
    }
    out
}

pub(super) async fn run(c: &Client<Smr>, verb: Verb) -> anyhow::Result<Output> {
    let request = match command(&verb) {
        Ok(Some(r)) => r,
        Ok(None) => return menu(c).await,
        Err(e) => anyhow::bail!("{e}"),
    };
    let op = c.op(c.id(), &request).await?;
    Ok(render(&op))
}

const MENU: &str = "\
What would you like to do?
[l] List all vaccine sites
[v] View a site's availability
[e] Edit a site's availability
[n] Add a new site
[q] Quit";

/// The seed's interactive menu, on stdin and stdout, until [q] or EOF.
async fn menu(c: &Client<Smr>) -> anyhow::Result<Output> {
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
        let Some(choice) = ask("> ")? else { break };
        let verb = match choice.to_ascii_lowercase().as_str() {
            "l" => Verb::List,
            "v" => {
                let Some(site) = ask("Site name: ")? else {
                    break;
                };
                Verb::View { site: vec![site] }
            }
            "e" => {
                let Some(site) = ask("Site name: ")? else {
                    break;
                };
                let Some(n) = ask("New availability (a number, True or False): ")? else {
                    break;
                };
                Verb::Edit {
                    words: vec![site, n],
                }
            }
            "n" => {
                let Some(site) = ask("Site name: ")? else {
                    break;
                };
                let Some(zip) = ask("ZIP code: ")? else { break };
                Verb::Add {
                    words: vec![site, zip],
                }
            }
            "q" => {
                let _ = c.op(c.id(), &Request::Quit).await;
                break;
            }
            other => {
                println!("Please choose l, v, e, n or q (got {other:?})");
                continue;
            }
        };
        let request = match command(&verb) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                println!("{e}");
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
    println!();
    Ok(Output::ok(
        format!("{done} operations"),
        &serde_json::json!({ "operations": done }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    #[test]
    fn multi_word_sites_and_bad_input() {
        assert_eq!(
            command(&Verb::Edit {
                words: words("Harvard University 10")
            }),
            Ok(Some(Request::Command(Command::Edit {
                site: "Harvard University".into(),
                availability: Availability::Count(10)
            })))
        );
        assert_eq!(
            command(&Verb::Edit {
                words: words("MIT -3")
            }),
            Err(DbError::NegativeAvailability("-3".into()))
        );
        assert_eq!(
            command(&Verb::Add {
                words: words("Boston University 02a15")
            }),
            Err(DbError::BadZip("02a15".into()))
        );
        assert_eq!(
            command(&Verb::View { site: words("a`b") }),
            Err(DbError::BadSiteChar)
        );
        assert_eq!(
            command(&Verb::Edit {
                words: words("MIT False")
            }),
            Ok(Some(Request::Command(Command::Edit {
                site: "MIT".into(),
                availability: Availability::Flag(false)
            })))
        );
    }
}
