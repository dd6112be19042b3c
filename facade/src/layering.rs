//! The crate's layering, checked on its source so that it cannot drift
//! (the crate docs in `lib.rs` state the rules):
//!
//! - every file belongs to a layer, by folder: `wire` < `decision` <
//!   `config` < `flow` < `control` < the crate root (`lib.rs`);
//! - no file imports from a layer above its own;
//! - no files import each other in a circle, within a layer too.
//!
//! An import is a `crate::…` or `super::…` path, in a `use` (grouped ones
//! expanded) or written inline, outside comments and string literals;
//! test code counts too. A path names the deepest module file it reaches
//! (`crate::wire::http1::FastBody` is `wire/http1.rs`, even if the item is
//! defined in a submodule and re-exported), so a re-export counts as a
//! dependency of the file that makes it. A module naming its own
//! submodules (`mod body;`, `body::…`) is containment, not an import.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers, bottom to top: the first module of a file's path.
const LAYERS: [&str; 5] = ["wire", "decision", "config", "flow", "control"];

/// The crate root's rank: above every layer.
const ROOT: usize = LAYERS.len();

/// This file: the check, not part of the layering.
const SELF: &str = "layering.rs";

/// The module path of a source file (`flow/shadow/mod.rs` →
/// `flow::shadow`, `lib.rs` → the root).
fn module_of(file: &str) -> Vec<String> {
    let stem = file.strip_suffix(".rs").unwrap_or(file);
    let mut segments: Vec<String> = stem.split('/').map(str::to_owned).collect();
    if matches!(segments.last().map(String::as_str), Some("mod" | "lib")) {
        segments.pop();
    }
    segments
}

/// A file's rank: its layer's index, [`ROOT`] for `lib.rs`, `None` for a
/// file outside every layer.
fn rank(file: &str) -> Option<usize> {
    match module_of(file).first() {
        None => Some(ROOT),
        Some(first) => LAYERS.iter().position(|layer| first == layer),
    }
}

/// `source` with comments, string and character literals blanked out, so
/// that only code is searched.
fn code_only(source: &str) -> String {
    let bytes = source.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    let blank = |out: &mut Vec<u8>, from: &[u8]| {
        out.extend(from.iter().map(|&b| if b == b'\n' { b'\n' } else { b' ' }));
    };
    while i < bytes.len() {
        let rest = &bytes[i..];
        let end = if rest.starts_with(b"//") {
            rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len())
        } else if rest.starts_with(b"/*") {
            let mut depth = 0;
            let mut j = 0;
            while j < rest.len() {
                if rest[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if rest[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            j
        } else if let Some(hashes) = raw_string_start(rest) {
            let closing: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            let open = rest.iter().position(|&b| b == b'"').unwrap_or(0) + 1;
            rest[open..]
                .windows(closing.len())
                .position(|w| w == closing.as_slice())
                .map_or(rest.len(), |p| open + p + closing.len())
        } else if rest[0] == b'"' {
            let mut j = 1;
            while j < rest.len() && rest[j] != b'"' {
                j += if rest[j] == b'\\' { 2 } else { 1 };
            }
            (j + 1).min(rest.len())
        } else if rest[0] == b'\'' && rest.get(1) == Some(&b'\\') {
            // `'\''`, `'\n'`, `'\u{…}'`: the escaped character is skipped.
            rest.get(3..)
                .and_then(|r| r.iter().position(|&b| b == b'\''))
                .map_or(1, |p| p + 4)
        } else if rest[0] == b'\'' && rest.get(2) == Some(&b'\'') {
            3
        } else {
            out.push(rest[0]);
            i += 1;
            continue;
        };
        blank(&mut out, &rest[..end]);
        i += end.max(1);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The number of `#` of a raw string literal starting here (`r"`, `r#"`,
/// `br"`), if one does.
fn raw_string_start(rest: &[u8]) -> Option<usize> {
    let rest = rest.strip_prefix(b"b").unwrap_or(rest);
    let rest = rest.strip_prefix(b"r")?;
    let hashes = rest.iter().take_while(|&&b| b == b'#').count();
    (rest.get(hashes) == Some(&b'"')).then_some(hashes)
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Whether `word` starts at `at` in `code` as a whole word.
fn word_at(code: &[u8], at: usize, word: &str) -> bool {
    code[at..].starts_with(word.as_bytes())
        && (at == 0 || !is_ident(code[at - 1]))
        && code.get(at + word.len()).is_none_or(|&b| !is_ident(b))
}

/// The paths of a use tree (`crate::a::{b, c::{d, e as f}, self}`).
fn expand_use_tree(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let path = tree.split(" as ").next().unwrap_or(tree).trim();
        return vec![path.replace(char::is_whitespace, "")];
    };
    let prefix = tree[..open]
        .trim()
        .trim_end_matches("::")
        .replace(char::is_whitespace, "");
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut pieces = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                pieces.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    pieces.push(&inner[start..]);
    pieces
        .into_iter()
        .filter(|piece| !piece.trim().is_empty())
        .flat_map(expand_use_tree)
        .map(|path| match path.as_str() {
            "self" => prefix.clone(),
            _ => format!("{prefix}::{path}"),
        })
        .collect()
}

/// Every `crate::…` and `super::…` path in `code` (comments and literals
/// already blanked), each with the module it is written in: a file's own,
/// or that of an inline `mod name { … }` in it (so `super` inside
/// `mod tests` is the file's module).
fn paths_in(code: &str, module: &[String]) -> Vec<(Vec<String>, String)> {
    let bytes = code.as_bytes();
    let mut found = Vec::new();
    // Inline modules one level deep: (content range, module path).
    let mut scopes: Vec<(std::ops::Range<usize>, Vec<String>)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' => depth += 1,
            b'}' => depth = depth.saturating_sub(1),
            _ if depth == 0 && word_at(bytes, i, "mod") => {
                let after = &code[i + 3..];
                let name: String = after
                    .trim_start()
                    .bytes()
                    .take_while(|&b| is_ident(b))
                    .map(char::from)
                    .collect();
                let rest = after.trim_start()[name.len()..].trim_start();
                if rest.starts_with('{') {
                    let open = code.len() - rest.len();
                    let close = matching_brace(bytes, open);
                    let mut inner = module.to_vec();
                    inner.push(name);
                    scopes.push((open + 1..close, inner));
                    i = close;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    let module_at = |at: usize| {
        scopes
            .iter()
            .find(|(range, _)| range.contains(&at))
            .map_or(module.to_vec(), |(_, inner)| inner.clone())
    };
    // `use` trees, grouped ones expanded; then what is left, inline paths.
    let mut rest = bytes.to_vec();
    let mut i = 0;
    while i < bytes.len() {
        if word_at(bytes, i, "use") {
            let end = bytes[i..]
                .iter()
                .position(|&b| b == b';')
                .map_or(bytes.len(), |p| i + p);
            let tree = &code[i + 3..end];
            for path in expand_use_tree(tree) {
                found.push((module_at(i), path));
            }
            rest[i..end].fill(b' ');
            i = end;
        }
        i += 1;
    }
    let rest = String::from_utf8_lossy(&rest).into_owned();
    let rest = rest.as_bytes();
    for start in 0..rest.len() {
        if !(word_at(rest, start, "crate") || word_at(rest, start, "super"))
            || start > 0 && rest[start - 1] == b'$'
        {
            continue;
        }
        // Only a path: `pub(crate)` and `pub(super)` are not.
        let end = start
            + rest[start..]
                .iter()
                .position(|&b| !(is_ident(b) || b == b':'))
                .unwrap_or(rest.len() - start);
        let path = String::from_utf8_lossy(&rest[start..end])
            .trim_end_matches(':')
            .to_owned();
        if path.contains("::") && (start == 0 || !matches!(rest[start - 1], b':')) {
            found.push((module_at(start), path));
        }
    }
    found
        .into_iter()
        .filter(|(_, path)| path.starts_with("crate::") || path.starts_with("super::"))
        .collect()
}

/// Where the brace opened at `open` closes.
fn matching_brace(bytes: &[u8], open: usize) -> usize {
    let mut depth = 0;
    for (i, &b) in bytes.iter().enumerate().skip(open) {
        match b {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    bytes.len()
}

/// The module segments `path` names, written in `module`.
fn absolute(path: &str, module: &[String]) -> Vec<String> {
    let mut segments = path.split("::").filter(|s| !s.is_empty());
    let mut base: Vec<String> = Vec::new();
    let mut first = segments.next();
    if first == Some("crate") {
        first = segments.next();
    } else {
        base = module.to_vec();
        while first == Some("super") {
            base.pop();
            first = segments.next();
        }
    }
    base.extend(first.into_iter().chain(segments).map(str::to_owned));
    base
}

/// The file of the deepest module among `segments`' prefixes; the crate
/// root if none.
fn file_of(segments: &[String], files: &BTreeSet<String>) -> String {
    (1..=segments.len())
        .rev()
        .map(|n| segments[..n].join("/"))
        .flat_map(|stem| [format!("{stem}.rs"), format!("{stem}/mod.rs")])
        .find(|candidate| files.contains(candidate))
        .unwrap_or_else(|| "lib.rs".to_owned())
}

/// What is wrong with the layering of `sources` (path under `src/` →
/// text): files outside every layer, imports from a higher layer, and
/// import cycles. Empty when all is well.
fn problems(sources: &BTreeMap<String, String>) -> Vec<String> {
    let files: BTreeSet<String> = sources.keys().cloned().collect();
    let mut problems = Vec::new();
    let mut edges: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (file, source) in sources {
        let Some(own) = rank(file) else {
            problems.push(format!("{file} is in no layer; move it into one of {LAYERS:?}"));
            continue;
        };
        let module = module_of(file);
        for (written_in, path) in paths_in(&code_only(source), &module) {
            let target = file_of(&absolute(&path, &written_in), &files);
            if target == *file {
                continue;
            }
            if let Some(theirs) = rank(&target).filter(|&theirs| theirs > own) {
                let name = |r: usize| LAYERS.get(r).copied().unwrap_or("the crate root");
                problems.push(format!(
                    "{file} ({}) imports `{path}` from {target} ({}), a higher layer",
                    name(own),
                    name(theirs)
                ));
            }
            edges.entry(file).or_default().insert(target);
        }
    }
    if let Some(cycle) = find_cycle(&edges) {
        problems.push(format!(
            "files import each other in a circle: {}",
            cycle.join(" → ")
        ));
    }
    problems
}

/// A cycle of `edges`, as the files along it with the first repeated at
/// the end, if there is one.
fn find_cycle(edges: &BTreeMap<&str, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        file: &str,
        edges: &BTreeMap<&str, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(file) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let from = stack.iter().position(|f| f == file).unwrap_or(0);
                let mut cycle = stack[from..].to_vec();
                cycle.push(file.to_owned());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(file.to_owned(), Mark::Open);
        stack.push(file.to_owned());
        for next in edges.get(file).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, marks, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        marks.insert(file.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    edges
        .keys()
        .find_map(|file| visit(file, edges, &mut marks, &mut Vec::new()))
}

/// Every `.rs` file under `dir`, by its path relative to `root`.
fn read_sources(root: &Path, dir: &Path, into: &mut BTreeMap<String, String>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            read_sources(root, &path, into);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            let relative = path.strip_prefix(root).expect("under the root");
            let name = relative.to_string_lossy().replace('\\', "/");
            if name != SELF {
                let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {name}: {e}"));
                into.insert(name, text);
            }
        }
    }
}

#[test]
fn layers_only_look_down_and_files_import_no_circle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut sources = BTreeMap::new();
    read_sources(&root, &root, &mut sources);
    assert!(sources.len() > 40, "found only {} source files", sources.len());
    let problems = problems(&sources);
    assert!(problems.is_empty(), "layering broken:\n{}", problems.join("\n"));
}

mod tests {
    use super::*;

    fn sources(files: &[(&str, &str)]) -> BTreeMap<String, String> {
        files
            .iter()
            .map(|(f, s)| ((*f).to_owned(), (*s).to_owned()))
            .collect()
    }

    #[test]
    fn expands_grouped_imports() {
        assert_eq!(
            expand_use_tree(" crate::a::{b, c::{d, e as f}, self}"),
            vec!["crate::a::b", "crate::a::c::d", "crate::a::c::e", "crate::a"]
        );
        assert_eq!(expand_use_tree("super::X as Y"), vec!["super::X"]);
    }

    #[test]
    fn sees_code_only() {
        let code = code_only("let a = \"crate::x\"; // crate::y\n/* crate::z */ let c = '\"'; crate::w::V");
        assert!(!code.contains("crate::x") && !code.contains("crate::y") && !code.contains("crate::z"));
        assert!(code.contains("crate::w::V"));
    }

    #[test]
    fn finds_an_upward_import_in_any_form() {
        let below = "pub struct Up;";
        for import in [
            "use crate::flow::up::Up;",
            "pub(crate) use crate::{decision::d, flow::up::{self, Up}};",
            "fn f() -> crate::flow::up::Up { crate::flow::up::Up }",
        ] {
            let found = problems(&sources(&[
                ("lib.rs", ""),
                ("wire/mod.rs", ""),
                ("wire/low.rs", import),
                ("flow/mod.rs", ""),
                ("flow/up.rs", below),
                ("decision/mod.rs", ""),
                ("decision/d.rs", ""),
            ]));
            assert!(
                found
                    .iter()
                    .any(|p| p.contains("wire/low.rs (wire) imports") && p.contains("flow/up.rs")),
                "{import}: {found:?}"
            );
        }
    }

    #[test]
    fn finds_a_cycle_within_a_layer_and_through_super() {
        let found = problems(&sources(&[
            ("lib.rs", ""),
            ("flow/mod.rs", ""),
            ("flow/a.rs", "use crate::flow::b::B;"),
            ("flow/b.rs", "pub fn f() { crate::flow::c::g() }"),
            ("flow/c.rs", "use super::a;"),
        ]));
        assert!(
            found
                .iter()
                .any(|p| p.contains("circle") && p.contains("flow/a.rs → flow/b.rs")),
            "{found:?}"
        );
    }

    #[test]
    fn super_in_an_inline_module_is_the_file_and_pub_crate_is_no_path() {
        let found = problems(&sources(&[
            ("lib.rs", ""),
            ("wire/mod.rs", ""),
            (
                "wire/low.rs",
                "pub(crate) fn f() {}\n#[cfg(test)]\nmod tests {\n    use super::*;\n}\n",
            ),
        ]));
        assert!(found.is_empty(), "{found:?}");
        let found = problems(&sources(&[("lib.rs", ""), ("helpers.rs", "")]));
        assert!(found.iter().any(|p| p.contains("helpers.rs is in no layer")));
    }
}
