//! A parser for the Prometheus text exposition format, enough for what
//! faultline's nodes and proxy export: `name{label="value",...} value`, with
//! escaped label values. Comments and malformed lines are skipped.

use crate::record::Sample;
use std::collections::BTreeMap;

/// Parses every sample line of `text`.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, rest) = match line.find(['{', ' ']) {
        Some(i) => line.split_at(i),
        None => return None,
    };
    let mut labels = BTreeMap::new();
    let rest = if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        let mut end = None;
        loop {
            // label name
            let start = chars.peek()?.0;
            let mut eq = None;
            for (i, c) in chars.by_ref() {
                if c == '=' {
                    eq = Some(i);
                    break;
                }
                if c == '}' {
                    end = Some(i);
                    break;
                }
            }
            if end.is_some() {
                break;
            }
            let key = body[start..eq?]
                .trim()
                .trim_start_matches(',')
                .trim()
                .to_string();
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                let (_, c) = chars.next()?;
                match c {
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    '"' => break,
                    c => value.push(c),
                }
            }
            labels.insert(key, value);
            match chars.peek() {
                Some((_, ',')) => {
                    chars.next();
                    if let Some((i, '}')) = chars.peek().copied() {
                        end = Some(i);
                        break;
                    }
                }
                Some((i, '}')) => {
                    end = Some(*i);
                    break;
                }
                _ => return None,
            }
        }
        &body[end? + 1..]
    } else {
        rest
    };
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_values_and_skips_comments() {
        let text = "# HELP x y\n# TYPE x counter\nx_total{node=\"s1\",peer=\"c\\\"1\"} 42\nup 1\nh_bucket{le=\"+Inf\",} 3\nbad{oops 1\nlat 1.5e-3\n";
        let s = parse(text);
        assert_eq!(s.len(), 4, "{s:?}");
        assert_eq!(s[0].name, "x_total");
        assert_eq!(s[0].labels["peer"], "c\"1");
        assert_eq!(s[0].value, 42.0);
        assert_eq!(s[1].name, "up");
        assert_eq!(s[2].labels["le"], "+Inf");
        assert_eq!(s[3].value, 1.5e-3);
    }
}
