//! A schedule's results directory: `index.json` (every run, its verdict, its
//! directory, kept across restarts of the schedule) and `index.html` (the
//! runs newest first with links to each report, and a verdict-over-time
//! strip). Both are rewritten whole, through a temporary file, after each run.

use crate::results::Valid;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

pub const INDEX_JSON: &str = "index.json";
pub const INDEX_HTML: &str = "index.html";

/// One run of a schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub scenario: String,
    /// The run directory, relative to the results directory.
    pub dir: String,
    /// Unix seconds when the run started and when it was judged.
    pub start_s: f64,
    pub end_s: f64,
    /// `valid`, `invalid` or `unknown`.
    pub verdict: String,
    /// The verdict line, or why the run could not be made.
    pub summary: String,
    /// Its directory was removed to keep the last `--keep` runs.
    #[serde(default)]
    pub pruned: bool,
}

impl IndexEntry {
    pub fn valid(&self) -> Valid {
        match self.verdict.as_str() {
            "valid" => Valid::True,
            "invalid" => Valid::False,
            _ => Valid::Unknown,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Index {
    /// Oldest first.
    pub runs: Vec<IndexEntry>,
}

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a schedule's index ({source}); move it aside or choose another --results directory")]
    Json {
        path: String,
        source: serde_json::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> IndexError + '_ {
    move |source| IndexError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes `text` to `path` through a temporary file and a rename, so a
/// reader (or a schedule killed meanwhile) never sees half a file.
fn write_atomic(path: &Path, text: &str) -> Result<(), IndexError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

impl Index {
    /// The index of `dir`, or an empty one if it has none yet.
    pub fn load(dir: &Path) -> Result<Self, IndexError> {
        let path = dir.join(INDEX_JSON);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|source| IndexError::Json {
                path: path.display().to_string(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Index::default()),
            Err(e) => Err(io(&path)(e)),
        }
    }

    pub fn save(&self, dir: &Path, title: &str) -> Result<(), IndexError> {
        let json = serde_json::to_string_pretty(self).map_err(|source| IndexError::Json {
            path: dir.join(INDEX_JSON).display().to_string(),
            source,
        })?;
        write_atomic(&dir.join(INDEX_JSON), &json)?;
        write_atomic(&dir.join(INDEX_HTML), &self.html(title, dir))
    }

    /// Removes the directories of all but the last `keep` runs (marking them
    /// pruned); returns the directories removed.
    pub fn prune(&mut self, dir: &Path, keep: usize) -> Vec<PathBuf> {
        let kept_from = self.runs.len().saturating_sub(keep);
        let mut removed = Vec::new();
        for e in self.runs[..kept_from].iter_mut().filter(|e| !e.pruned) {
            // Only a plain name inside the results directory is ever removed.
            if e.dir.is_empty() || e.dir.contains('/') || e.dir.contains("..") {
                continue;
            }
            let path = dir.join(&e.dir);
            match std::fs::remove_dir_all(&path) {
                Ok(()) => removed.push(path),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => {
                    tracing::warn!("cannot remove {}: {err}", path.display());
                    continue;
                }
            }
            e.pruned = true;
        }
        removed
    }

    /// The page: a strip of verdicts over time, then the runs newest first,
    /// each linked to its report when `dir` (the results directory) has it.
    pub fn html(&self, title: &str, dir: &Path) -> String {
        let mut h = String::new();
        let _ = write!(
            h,
            "<!doctype html><html><head><meta charset=\"utf-8\">\
             <meta http-equiv=\"refresh\" content=\"60\"><title>{t}</title><style>\
             body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}\
             td,th{{padding:.2em .8em;border-bottom:1px solid #ddd;text-align:left}}\
             .valid{{color:#1a7f37}}.invalid{{color:#cf222e;font-weight:bold}}.unknown{{color:#777}}\
             </style></head><body><h1>{t}</h1>",
            t = escape(title)
        );
        let count = |v: &str| self.runs.iter().filter(|e| e.verdict == v).count();
        let _ = write!(
            h,
            "<p>{} runs: {} valid, {} invalid, {} unknown.</p>",
            self.runs.len(),
            count("valid"),
            count("invalid"),
            count("unknown")
        );
        h.push_str(&self.strip());
        h.push_str(
            "<table><tr><th>started (UTC)</th><th>scenario</th><th>verdict</th>\
             <th>took</th><th>summary</th></tr>",
        );
        for e in self.runs.iter().rev() {
            let has_report = !e.pruned && dir.join(&e.dir).join("report.html").is_file();
            let link = if !has_report {
                escape(&e.verdict)
            } else {
                format!(
                    "<a href=\"{}/report.html\">{}</a>",
                    escape(&e.dir),
                    escape(&e.verdict)
                )
            };
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td class=\"{}\">{link}</td><td>{}</td><td>{}</td></tr>",
                utc(e.start_s),
                escape(&e.scenario),
                escape(&e.verdict),
                crate::report::fmt_duration(e.end_s - e.start_s),
                escape(&e.summary)
            );
        }
        h.push_str("</table></body></html>\n");
        h
    }

    /// One square per run, oldest left, coloured by verdict; hovering says
    /// which run it is.
    fn strip(&self) -> String {
        const W: usize = 10;
        let n = self.runs.len().max(1);
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{W}\" \
             role=\"img\" aria-label=\"verdicts over time\">",
            n * (W + 2)
        );
        for (i, e) in self.runs.iter().enumerate() {
            let colour = match e.valid() {
                Valid::True => "#2da44e",
                Valid::False => "#cf222e",
                Valid::Unknown => "#999",
            };
            let _ = write!(
                s,
                "<rect x=\"{}\" y=\"0\" width=\"{W}\" height=\"{W}\" fill=\"{colour}\">\
                 <title>{} {}: {}</title></rect>",
                i * (W + 2),
                utc(e.start_s),
                escape(&e.scenario),
                escape(&e.verdict)
            );
        }
        s.push_str("</svg>");
        s
    }
}

fn utc(unix_s: f64) -> String {
    chrono::DateTime::from_timestamp(unix_s as i64, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "?".into())
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u32, verdict: &str) -> IndexEntry {
        IndexEntry {
            scenario: "demo<b>".into(),
            dir: format!("demo-{i}"),
            start_s: 1_764_547_200.0 + f64::from(i) * 1800.0,
            end_s: 1_764_547_260.0 + f64::from(i) * 1800.0,
            verdict: verdict.into(),
            summary: "verdict: valid".into(),
            pruned: false,
        }
    }

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("faultline-index-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    }

    #[test]
    fn an_index_survives_a_save_and_load_and_its_page_escapes() {
        let dir = tempdir("save");
        let index = Index {
            runs: vec![entry(0, "valid"), entry(1, "invalid"), entry(2, "unknown")],
        };
        // Runs 0 and 1 have their reports; run 2 could not be made.
        for i in 0..2 {
            std::fs::create_dir_all(dir.join(format!("demo-{i}"))).expect("run dir");
            std::fs::write(dir.join(format!("demo-{i}/report.html")), "r").expect("report");
        }
        index.save(&dir, "faultline schedule").expect("saved");
        assert_eq!(Index::load(&dir).expect("loaded"), index);
        let html = std::fs::read_to_string(dir.join(INDEX_HTML)).expect("page");
        assert!(
            html.contains("3 runs: 1 valid, 1 invalid, 1 unknown"),
            "{html}"
        );
        assert!(
            html.contains("<a href=\"demo-1/report.html\">invalid</a>"),
            "{html}"
        );
        assert!(
            html.contains("demo&lt;b&gt;") && !html.contains("demo<b>"),
            "{html}"
        );
        assert_eq!(html.matches("<rect ").count(), 3);
        // Newest first in the table.
        assert!(
            !html.contains("demo-2/report.html"),
            "no report, no link: {html}"
        );
        assert!(html.find("demo-1/").expect("run 1") < html.find("demo-0/").expect("run 0"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_index_is_empty_and_a_foreign_one_is_refused() {
        let dir = tempdir("foreign");
        assert_eq!(Index::load(&dir).expect("empty"), Index::default());
        std::fs::write(dir.join(INDEX_JSON), "[1, 2]").expect("write");
        let e = Index::load(&dir).expect_err("not an index").to_string();
        assert!(e.contains("is not a schedule's index"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn prune_keeps_the_last_runs_and_never_leaves_the_directory() {
        let dir = tempdir("prune");
        let mut index = Index {
            runs: (0..4).map(|i| entry(i, "valid")).collect(),
        };
        index.runs[0].dir = "../outside".into();
        for e in &index.runs[1..] {
            std::fs::create_dir_all(dir.join(&e.dir)).expect("run dir");
        }
        let removed = index.prune(&dir, 2);
        assert_eq!(removed, vec![dir.join("demo-1")]);
        assert!(!index.runs[0].pruned, "a path outside is never removed");
        assert!(index.runs[1].pruned && !index.runs[2].pruned && !index.runs[3].pruned);
        assert!(dir.join("demo-2").exists() && dir.join("demo-3").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
