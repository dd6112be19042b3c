//! Finding the metric names that `deploy/` uses and the ones a facade
//! exports, without a YAML or PromQL library: the files are ours, and the
//! shapes read here are the ones they use (checked by counting, so that a
//! shape this does not read fails the test instead of being skipped).

use std::collections::BTreeSet;

/// PromQL words that are never metric names here: binary and modifier
/// keywords, and the aggregations, which may stand before their
/// parentheses with `by (…)` or `without (…)` in between.
const KEYWORDS: [&str; 28] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "and",
    "or",
    "unless",
    "atan2",
    "inf",
    "nan",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// Modifiers whose parenthesized list holds label names, not metrics.
const LABEL_LISTS: [&str; 6] = ["by", "without", "on", "ignoring", "group_left", "group_right"];

/// The metric names a PromQL expression selects: every identifier that is
/// not a function or aggregation (followed by `(`), a keyword, a label
/// inside `{…}` or a modifier's list, a string, a duration inside `[…]`,
/// a number, or a Grafana variable (`$name`, `${name}`).
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => i = skip_string(&chars, i),
            '{' => i = skip_to(&chars, i, '}'),
            '[' => i = skip_to(&chars, i, ']'),
            '#' => i = skip_to(&chars, i, '\n'),
            '$' => {
                i += 1;
                if chars.get(i) == Some(&'{') {
                    i = skip_to(&chars, i, '}');
                } else {
                    while i < chars.len() && is_word(chars[i]) {
                        i += 1;
                    }
                }
            }
            c if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) => {
                // A number, possibly with an exponent or a unit (`5m`, `1e3`).
                while i < chars.len() && (is_word(chars[i]) || chars[i] == '.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len() && is_word(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let next = chars[i..].iter().find(|c| !c.is_whitespace()).copied();
                if LABEL_LISTS.contains(&word.as_str()) {
                    if next == Some('(') {
                        let open = i + chars[i..].iter().position(|&c| c == '(').unwrap_or(0);
                        i = skip_to(&chars, open, ')');
                    }
                } else if KEYWORDS.contains(&word.as_str()) || next == Some('(') {
                    // A keyword, or a function or aggregation by name.
                } else {
                    names.insert(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// The index just past the quote that closes the string opened at `start`.
fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if quote != '`' => i += 2,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    i
}

/// The index just past the first `close` after `start` (strings skipped).
fn skip_to(chars: &[char], start: usize, close: char) -> usize {
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' if close != '\n' => i = skip_string(chars, i),
            c if c == close => return i + 1,
            _ => i += 1,
        }
    }
    i
}

/// Where a name or an expression was found.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Found {
    pub file: String,
    pub line: usize,
    pub text: String,
}

/// The value of every `key:` in a YAML file, as these files write it: a
/// plain or quoted scalar on the line, or a `|` / `>` block below it.
pub fn yaml_values(file: &str, yaml: &str, key: &str) -> Vec<Found> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut found = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start().trim_start_matches("- ");
        let Some(rest) = trimmed.strip_prefix(key).and_then(|r| r.strip_prefix(':')) else {
            continue;
        };
        let rest = rest.trim();
        let text = if rest.starts_with('|') || rest.starts_with('>') {
            block_below(&lines, index)
        } else {
            unquote(rest)
        };
        found.push(Found {
            file: file.to_owned(),
            line: index + 1,
            text,
        });
    }
    found
}

/// The lines indented deeper than line `at`, dedented.
fn block_below(lines: &[&str], at: usize) -> String {
    let indent = |line: &str| line.len() - line.trim_start().len();
    let own = indent(lines[at]);
    let body: Vec<&str> = lines[at + 1..]
        .iter()
        .take_while(|line| line.trim().is_empty() || indent(line) > own)
        .copied()
        .collect();
    let depth = body
        .iter()
        .filter(|line| !line.trim().is_empty())
        .map(|line| indent(line))
        .min()
        .unwrap_or(0);
    let mut text: Vec<&str> = body.iter().map(|line| line.get(depth..).unwrap_or("")).collect();
    while text.last().is_some_and(|line| line.is_empty()) {
        text.pop();
    }
    text.join("\n") + "\n"
}

fn unquote(scalar: &str) -> String {
    let bytes = scalar.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(b'\''), Some(b'\'')) if scalar.len() >= 2 => scalar[1..scalar.len() - 1].replace("''", "'"),
        (Some(b'"'), Some(b'"')) if scalar.len() >= 2 => scalar[1..scalar.len() - 1].replace("\\\"", "\""),
        _ => scalar.to_owned(),
    }
}

/// Every sample name of a Prometheus text exposition, and the names a
/// described family is scraped as: `_total` for a counter (OpenMetrics
/// describes it without), `_bucket`, `_sum` and `_count` for a histogram.
pub fn exposed_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        if let Some(described) = line.strip_prefix("# TYPE ") {
            let mut parts = described.split_whitespace();
            if let (Some(family), Some(kind)) = (parts.next(), parts.next()) {
                let suffixes: &[&str] = match kind {
                    "counter" => &["_total"],
                    "histogram" => &["_bucket", "_sum", "_count"],
                    "summary" => &["", "_sum", "_count"],
                    _ => &[""],
                };
                names.extend(suffixes.iter().map(|suffix| format!("{family}{suffix}")));
            }
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_owned());
        }
    }
    names
}

#[test]
fn names_are_told_from_functions_labels_keywords_and_variables() {
    let expr = r#"histogram_quantile(0.99, sum by (le, capability) (rate(a_seconds_bucket{capability=~"$capability", x="by (b)"}[$__rate_interval])))
        / on (capability) group_left (stage) max without (instance) (b_total offset 5m) > bool 0.5
        or vector(0) unless c:recorded:rate5m and ${d} # e_comment
        * 1e3 + .5 - inf"#;
    let found: Vec<String> = metric_names(expr).into_iter().collect();
    assert_eq!(found, ["a_seconds_bucket", "b_total", "c:recorded:rate5m"]);
}

#[test]
fn yaml_scalars_and_blocks_are_read() {
    let yaml = "groups:\n  - name: g\n    rules:\n      - record: r:one\n        expr: sum(x_total)\n      - alert: A\n        expr: |\n          y > 1\n            and z\n        for: 1m\n      - expr: 'q{a=\"b\"}'\n";
    let exprs: Vec<String> = yaml_values("f", yaml, "expr")
        .into_iter()
        .map(|f| f.text)
        .collect();
    assert_eq!(exprs, ["sum(x_total)", "y > 1\n  and z\n", "q{a=\"b\"}"]);
    let records: Vec<String> = yaml_values("f", yaml, "record")
        .into_iter()
        .map(|f| f.text)
        .collect();
    assert_eq!(records, ["r:one"]);
}

#[test]
fn exposed_names_include_the_scraped_forms_of_described_families() {
    let exposition = "# TYPE requests counter\nrequests_total{a=\"b\"} 1\n# TYPE latency histogram\n# TYPE up gauge\nup 1\n# EOF\n";
    let names: Vec<String> = exposed_names(exposition).into_iter().collect();
    assert_eq!(
        names,
        [
            "latency_bucket",
            "latency_count",
            "latency_sum",
            "requests_total",
            "up"
        ]
    );
}
