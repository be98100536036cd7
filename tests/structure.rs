//! The codebase's shape, checked: the library never imports from `cli` (the commands sit on
//! top of it), and no two source files import each other, directly or through others.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`stream::pipeline`) of every library source file.
fn modules() -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, root, out);
            } else if p.extension().is_some_and(|x| x == "rs") && p.file_name().unwrap() != "main.rs" {
                let rel = p.strip_prefix(root).unwrap().with_extension("");
                let mut parts: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
                if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
                    parts.pop();
                }
                out.insert(parts.join("::"), p);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    walk(&root, &root, &mut out);
    out
}

/// The modules a file's non-test code names through `crate::` or `super::` paths.
fn imports(module: &str, path: &Path, all: &BTreeMap<String, PathBuf>) -> BTreeSet<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let code = text.split("#[cfg(test)]").next().unwrap();
    let parent: Vec<&str> = module.split("::").filter(|s| !s.is_empty()).collect();
    let parent = &parent[..parent.len().saturating_sub(1)];
    let mut out = BTreeSet::new();
    for (prefix, base) in [("crate::", vec![]), ("super::", parent.to_vec())] {
        for (i, _) in code.match_indices(prefix) {
            let rest: String = code[i + prefix.len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let mut parts: Vec<&str> = base.clone();
            parts.extend(rest.split("::").filter(|s| !s.is_empty()));
            // The longest prefix of the path that is a module.
            for k in (1..=parts.len()).rev() {
                let cand = parts[..k].join("::");
                if all.contains_key(&cand) {
                    if cand != module {
                        out.insert(cand);
                    }
                    break;
                }
            }
        }
    }
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let all = modules();
    all.iter().map(|(m, p)| (m.clone(), imports(m, p, &all))).collect()
}

#[test]
fn the_library_never_imports_from_cli() {
    for (m, deps) in graph() {
        if m == "cli" || m.starts_with("cli::") || m.is_empty() {
            continue;
        }
        let bad: Vec<_> = deps
            .iter()
            .filter(|d| d.as_str() == "cli" || d.starts_with("cli::"))
            .collect();
        assert!(bad.is_empty(), "{m} imports {bad:?}");
    }
}

#[test]
fn there_are_no_import_cycles() {
    let g = graph();
    // Depth-first search; `on_path` holds the current chain.
    fn visit(
        m: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        on_path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = on_path.iter().position(|x| x == m) {
            let mut cycle = on_path[i..].to_vec();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        on_path.push(m.to_string());
        for d in g.get(m).into_iter().flatten() {
            // A module's own children (declared in it) are not a cycle back to it.
            if d.starts_with(&format!("{m}::")) || m.is_empty() {
                continue;
            }
            if let Some(c) = visit(d, g, done, on_path) {
                return Some(c);
            }
        }
        on_path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for m in g.keys() {
        if let Some(cycle) = visit(m, &g, &mut done, &mut Vec::new()) {
            panic!("import cycle: {}", cycle.join(" → "));
        }
    }
    assert!(g.len() > 40, "found only {} modules", g.len());
}
