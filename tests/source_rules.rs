//! Rules of the source tree, checked on its text.
//!
//! No import cycles between `src/` modules: each file's `crate::` paths (in `use`
//! lines and in code) are edges to the module files they name, and the graph must
//! have no cycle. A cycle makes modules that can only be read, changed and tested
//! together; shared leaves (counters, header grammar, ALB's rules) belong in modules
//! that import nothing above them. Relative paths (`super::`, a child module) are a
//! module's own business and not counted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path (`http1::parse`) of each file under `src/`.
fn modules(src: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).expect("under src");
            let mut parts: Vec<String> = rel
                .iter()
                .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
                .collect();
            if parts.last().is_some_and(|l| l == "mod") {
                parts.pop();
            }
            let module = parts.join("::");
            if module == "lib" || module == "main" {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read");
            out.insert(module, text);
        }
    }
    out
}

/// The text with line comments (doc comments included) removed.
fn code(text: &str) -> String {
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every full path a `crate::` occurrence names, brace groups expanded.
fn crate_paths(text: &str) -> Vec<Vec<String>> {
    let bytes = code(text);
    let mut paths = Vec::new();
    let mut rest = bytes.as_str();
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().last();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let (found, used) = parse_tree(rest, Vec::new());
        paths.extend(found);
        rest = &rest[used..];
    }
    paths
}

/// Parses `a::b::{c, d::e}` after a prefix; returns the paths and bytes used.
fn parse_tree(s: &str, prefix: Vec<String>) -> (Vec<Vec<String>>, usize) {
    let mut path = prefix;
    let mut i = 0;
    let b = s.as_bytes();
    loop {
        if s[i..].starts_with('{') {
            i += 1;
            let mut all = Vec::new();
            loop {
                while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b',') {
                    i += 1;
                }
                if i >= b.len() || b[i] == b'}' {
                    return (all, i + 1);
                }
                let (found, used) = parse_tree(&s[i..], path.clone());
                all.extend(found);
                i += used;
            }
        }
        let start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
            i += 1;
        }
        if i > start {
            path.push(s[start..i].to_string());
        }
        if s[i..].starts_with("::") {
            i += 2;
            continue;
        }
        // `as name` and the rest of the item end the path (a closing brace is the
        // group's, left for it).
        while i < b.len() && !matches!(b[i], b',' | b'}' | b';' | b'\n') {
            i += 1;
        }
        return (vec![path], i);
    }
}

/// The module file a path names: its longest prefix that is a module.
fn resolve(path: &[String], known: &BTreeMap<String, String>) -> Option<String> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|m| known.contains_key(m))
}

type Graph = BTreeMap<String, BTreeSet<String>>;

fn graph(known: &BTreeMap<String, String>) -> Graph {
    let mut g = Graph::new();
    for (module, text) in known {
        let edges = g.entry(module.clone()).or_default();
        for path in crate_paths(text) {
            if let Some(to) = resolve(&path, known) {
                if &to != module {
                    edges.insert(to);
                }
            }
        }
    }
    g
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(g: &Graph) -> Vec<Vec<String>> {
    struct State<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on.insert(v);
        for w in s.g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).expect("low");
                *lv = (*lv).min(lw);
            } else if s.on.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).expect("low");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                scc.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                scc.sort();
                s.out.push(scc);
            }
        }
    }
    let mut s = State {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn it_should_find_no_import_cycle_between_src_modules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let known = modules(&src);
    assert!(known.len() > 30, "read only {} modules", known.len());
    let g = graph(&known);
    let found = cycles(&g);
    let explain: Vec<String> = found
        .iter()
        .map(|scc| {
            let members: BTreeSet<&String> = scc.iter().collect();
            let edges: Vec<String> = scc
                .iter()
                .flat_map(|m| {
                    g[m].iter()
                        .filter(|t| members.contains(t))
                        .map(move |t| format!("{m} -> {t}"))
                })
                .collect();
            format!("{} modules: {}", scc.len(), edges.join(", "))
        })
        .collect();
    assert!(
        found.is_empty(),
        "import cycles between src/ modules:\n{}",
        explain.join("\n")
    );
}

#[test]
fn it_should_see_a_cycle_when_one_is_put_back() {
    // The check itself: a cycle through `use` groups, renames and inline paths.
    let known: BTreeMap<String, String> = [
        ("a", "use crate::{b::{self, X as Y}, c};\n"),
        ("b", "fn f() { crate::a::g(); } // crate::c::not_an_edge\n"),
        ("c", "use crate::d::Z;\n"),
        ("d", "pub struct Z;\n"),
    ]
    .into_iter()
    .map(|(m, t)| (m.to_string(), t.to_string()))
    .collect();
    let g = graph(&known);
    assert_eq!(cycles(&g), vec![vec!["a".to_string(), "b".to_string()]]);
    assert!(!g["b"].contains("c"), "a comment is no edge");
    let mut acyclic = known.clone();
    acyclic.insert("b".into(), "pub fn f() {}\n".into());
    assert!(cycles(&graph(&acyclic)).is_empty());
}

#[test]
fn it_should_document_every_public_function() {
    // A reader of a public function's call sees its doc comment, not its body:
    // `TargetGroup::new` once turned health checks off without a word.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut missing = Vec::new();
    for (module, text) in modules(&src) {
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.trim_start().starts_with("#[cfg(test)]") {
                break;
            }
            let t = line.trim_start();
            if !(t.starts_with("pub fn ") || t.starts_with("pub async fn ")) {
                continue;
            }
            let mut j = i;
            while j > 0 && lines[j - 1].trim_start().starts_with("#[") {
                j -= 1;
            }
            if j == 0 || !lines[j - 1].trim_start().starts_with("///") {
                missing.push(format!("{module}:{}: {}", i + 1, t));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "public functions without a doc comment:\n{}",
        missing.join("\n")
    );
}
