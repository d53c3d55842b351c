//! The replicated state machine of seed 001: the vaccine availability
//! database. Every replica applies the same commands in the same order to
//! this deterministic machine (docs/smr.md), so replicas agree on its state
//! and on every output; the outputs are the seed's, byte for byte, so its
//! own 17-step test can be replayed line for line.
//!
//! Input is validated before a command enters the order
//! ([`Command::validate`]) and again when it is applied: a command that
//! reaches the machine invalid (a bug, or a peer that skipped the check)
//! gets the same error on every replica and changes nothing.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The longest site name accepted, in characters.
pub const MAX_SITE_CHARS: usize = 200;
/// A ZIP code is 1 to this many ASCII digits (the seed accepted any digits).
pub const MAX_ZIP_DIGITS: usize = 10;
/// The largest availability count (doses), far from any overflow.
pub const MAX_COUNT: u64 = 1_000_000_000_000;

/// A site's availability: a count of doses, or the seed's yes/no.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Availability {
    Count(u64),
    Flag(bool),
}

impl fmt::Display for Availability {
    /// As the seed printed it (Python's `True`/`False`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Availability::Count(n) => write!(f, "{n}"),
            Availability::Flag(true) => f.write_str("True"),
            Availability::Flag(false) => f.write_str("False"),
        }
    }
}

impl std::str::FromStr for Availability {
    type Err = DbError;

    /// A non-negative integer, or true/false in any case.
    fn from_str(s: &str) -> Result<Self, DbError> {
        let t = s.trim();
        match t.to_ascii_lowercase().as_str() {
            "true" => return Ok(Availability::Flag(true)),
            "false" => return Ok(Availability::Flag(false)),
            _ => {}
        }
        if t.starts_with('-') && t[1..].chars().all(|c| c.is_ascii_digit()) && t.len() > 1 {
            return Err(DbError::NegativeAvailability(t.to_string()));
        }
        if t.is_empty() || !t.chars().all(|c| c.is_ascii_digit()) {
            return Err(DbError::BadAvailability(t.to_string()));
        }
        match t.parse::<u64>() {
            Ok(n) if n <= MAX_COUNT => Ok(Availability::Count(n)),
            _ => Err(DbError::BadAvailability(t.to_string())),
        }
    }
}

/// One site of the database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Site {
    pub zip: String,
    pub availability: Availability,
}

/// A command of the state machine (the seed's verbs but `quit`, which is
/// an ordering event, not a database command).
/// (Externally tagged: it crosses the wire and the log in postcard, which
/// cannot read serde's internally tagged enums.)
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Every site, sorted by name.
    List,
    View {
        site: String,
    },
    Edit {
        site: String,
        availability: Availability,
    },
    Add {
        site: String,
        zip: String,
    },
}

/// Bad input: said to the user, and nothing changes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DbError {
    #[error("a site name cannot be empty")]
    EmptySite,
    #[error("a site name has at most {MAX_SITE_CHARS} characters")]
    LongSite,
    #[error("a site name cannot hold a backtick or a line break")]
    BadSiteChar,
    #[error("a ZIP code is 1 to {MAX_ZIP_DIGITS} digits, not {0:?}")]
    BadZip(String),
    #[error("availability cannot be negative ({0})")]
    NegativeAvailability(String),
    #[error("availability is a whole number of doses (0 to {MAX_COUNT}) or true/false, not {0:?}")]
    BadAvailability(String),
}

fn check_site(site: &str) -> Result<(), DbError> {
    if site.trim().is_empty() {
        return Err(DbError::EmptySite);
    }
    if site.chars().count() > MAX_SITE_CHARS {
        return Err(DbError::LongSite);
    }
    if site.chars().any(|c| c == '`' || c == '\n' || c == '\r') {
        return Err(DbError::BadSiteChar);
    }
    Ok(())
}

fn check_zip(zip: &str) -> Result<(), DbError> {
    if zip.is_empty() || zip.len() > MAX_ZIP_DIGITS || !zip.chars().all(|c| c.is_ascii_digit()) {
        return Err(DbError::BadZip(zip.to_string()));
    }
    Ok(())
}

impl Command {
    /// Checks the command's input; what fails never enters the order.
    pub fn validate(&self) -> Result<(), DbError> {
        match self {
            Command::List => Ok(()),
            Command::View { site } => check_site(site),
            Command::Edit { site, availability } => {
                check_site(site)?;
                match availability {
                    Availability::Count(n) if *n > MAX_COUNT => {
                        Err(DbError::BadAvailability(n.to_string()))
                    }
                    _ => Ok(()),
                }
            }
            Command::Add { site, zip } => {
                check_site(site)?;
                check_zip(zip)
            }
        }
    }

    /// Whether applying it can change the database.
    pub fn is_write(&self) -> bool {
        matches!(self, Command::Edit { .. } | Command::Add { .. })
    }
}

/// The database: site name to site.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Db {
    pub sites: BTreeMap<String, Site>,
}

/// The seed's output lines for the header of `list`.
pub const LIST_HEADER: &str = "Availability,ZIP Code,Site Name";
/// The seed's answer for a site that is not in the database.
pub const NO_SUCH_SITE: &str = "Site does not exist. Choose [l] to view all sites.";

impl Default for Db {
    /// The seed's initial database: Harvard University, 02138, 0.
    fn default() -> Self {
        let mut sites = BTreeMap::new();
        sites.insert(
            "Harvard University".to_string(),
            Site {
                zip: "02138".into(),
                availability: Availability::Count(0),
            },
        );
        Db { sites }
    }
}

impl Db {
    /// Applies `cmd`; the output is the seed's lines. Invalid input changes
    /// nothing and answers the error.
    pub fn apply(&mut self, cmd: &Command) -> Result<Vec<String>, DbError> {
        cmd.validate()?;
        Ok(match cmd {
            Command::List => {
                // BTreeMap iterates in name order, as the seed sorted.
                let mut out = vec![LIST_HEADER.to_string()];
                out.extend(
                    self.sites
                        .iter()
                        .map(|(name, s)| format!("{},{},{}", s.availability, s.zip, name)),
                );
                out
            }
            Command::View { site } => match self.sites.get(site) {
                Some(s) => vec![format!(
                    "Availability at {site} (ZIP code {}): {}",
                    s.zip, s.availability
                )],
                None => vec![NO_SUCH_SITE.to_string()],
            },
            Command::Edit { site, availability } => match self.sites.get_mut(site) {
                Some(s) => {
                    s.availability = *availability;
                    vec![format!(
                        "Vaccine availability at {site} (ZIP code {}) updated to {availability}.",
                        s.zip
                    )]
                }
                None => vec![NO_SUCH_SITE.to_string()],
            },
            Command::Add { site, zip } => {
                if self.sites.contains_key(site) {
                    vec![format!("{site} already in database.")]
                } else {
                    self.sites.insert(
                        site.clone(),
                        Site {
                            zip: zip.clone(),
                            availability: Availability::Count(0),
                        },
                    );
                    vec![format!(
                        "{site} (ZIP code {zip}) added with vaccine availability 0."
                    )]
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edit(site: &str, a: &str) -> Command {
        Command::Edit {
            site: site.into(),
            availability: a.parse().expect("availability"),
        }
    }

    #[test]
    fn the_seeds_outputs_line_for_line() {
        let mut db = Db::default();
        assert_eq!(
            db.apply(&Command::List).expect("list"),
            [
                "Availability,ZIP Code,Site Name",
                "0,02138,Harvard University"
            ]
        );
        assert_eq!(
            db.apply(&Command::View {
                site: "Harvard University".into()
            })
            .expect("view"),
            ["Availability at Harvard University (ZIP code 02138): 0"]
        );
        assert_eq!(
            db.apply(&edit("Harvard University", "10")).expect("edit"),
            ["Vaccine availability at Harvard University (ZIP code 02138) updated to 10."]
        );
        assert_eq!(
            db.apply(&Command::Add {
                site: "MIT".into(),
                zip: "02138".into()
            })
            .expect("add"),
            ["MIT (ZIP code 02138) added with vaccine availability 0."]
        );
        assert_eq!(
            db.apply(&Command::Add {
                site: "MIT".into(),
                zip: "02139".into()
            })
            .expect("again"),
            ["MIT already in database."]
        );
        assert_eq!(
            db.apply(&edit("MIT", "False")).expect("flag"),
            ["Vaccine availability at MIT (ZIP code 02138) updated to False."]
        );
        assert_eq!(
            db.apply(&Command::View {
                site: "Tufts".into()
            })
            .expect("missing"),
            [NO_SUCH_SITE]
        );
        assert_eq!(
            db.apply(&edit("Tufts", "3")).expect("missing edit"),
            [NO_SUCH_SITE]
        );
        // Sorted by name, as the seed sorted.
        db.apply(&Command::Add {
            site: "Boston University".into(),
            zip: "02215".into(),
        })
        .expect("add");
        assert_eq!(
            db.apply(&Command::List).expect("list"),
            [
                "Availability,ZIP Code,Site Name",
                "0,02215,Boston University",
                "10,02138,Harvard University",
                "False,02138,MIT",
            ]
        );
    }

    #[test]
    fn bad_input_is_refused_and_changes_nothing() {
        let mut db = Db::default();
        let before = db.clone();
        for (cmd, want) in [
            (
                Command::Add {
                    site: "Tufts".into(),
                    zip: "02l55".into(),
                },
                DbError::BadZip("02l55".into()),
            ),
            (
                Command::Add {
                    site: "A`B".into(),
                    zip: "1".into(),
                },
                DbError::BadSiteChar,
            ),
            (
                Command::Add {
                    site: "A\nB".into(),
                    zip: "1".into(),
                },
                DbError::BadSiteChar,
            ),
            (
                Command::Add {
                    site: "  ".into(),
                    zip: "1".into(),
                },
                DbError::EmptySite,
            ),
            (
                Command::View {
                    site: "x".repeat(201),
                },
                DbError::LongSite,
            ),
            (
                Command::Edit {
                    site: "Harvard University".into(),
                    availability: Availability::Count(MAX_COUNT + 1),
                },
                DbError::BadAvailability((MAX_COUNT + 1).to_string()),
            ),
        ] {
            assert_eq!(db.apply(&cmd), Err(want), "{cmd:?}");
            assert_eq!(db, before, "{cmd:?} changed the database");
        }
        assert_eq!(
            "-3".parse::<Availability>(),
            Err(DbError::NegativeAvailability("-3".into()))
        );
        for bad in ["", "3.5", "yes", "1e3", "99999999999999999999"] {
            assert!(bad.parse::<Availability>().is_err(), "{bad:?}");
        }
        assert_eq!("TRUE".parse(), Ok(Availability::Flag(true)));
        assert_eq!(" 7 ".parse(), Ok(Availability::Count(7)));
    }

    #[test]
    fn commands_cross_the_wire_and_the_log() {
        let c = edit("MIT", "true");
        let text = serde_json::to_string(&c).expect("json");
        assert_eq!(
            text,
            r#"{"edit":{"site":"MIT","availability":{"flag":true}}}"#
        );
        assert_eq!(serde_json::from_str::<Command>(&text).expect("back"), c);
        // The wire and the log are postcard, which needs externally
        // tagged enums.
        let bytes = postcard::to_allocvec(&c).expect("postcard");
        assert_eq!(postcard::from_bytes::<Command>(&bytes).expect("back"), c);
        let e = DbError::BadZip("x".into());
        let bytes = postcard::to_allocvec(&e).expect("postcard");
        assert_eq!(postcard::from_bytes::<DbError>(&bytes).expect("back"), e);
    }
}
