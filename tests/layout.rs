//! The layout ARCHITECTURE.md promises, checked on the source tree so it stays true:
//!
//! - the root crate's modules use only modules of lower layers (the dependency rule), and no file
//!   of it imports another that (directly or not) imports it back;
//! - only `src/cli/render/` prints (the tracing subscriber `main` installs writes the log lines);
//! - no source file of the workspace passes 900 lines, and no inline test module 500 (those move to
//!   a `tests.rs` of their own); no test file passes 900 lines either.
//!
//! The checks read the files as text: `crate::a::b` paths, `use crate::{…}` lists and `super::x`
//! name the modules a file depends on.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The root crate's top-level modules, lowest layer first. A module may use modules of lower
/// layers only; the same list, with why, is in ARCHITECTURE.md.
const LAYERS: &[&[&str]] = &[
    &["controls", "exit", "pki", "shutdown", "windows"],
    &["config"],
    &["wiring", "consumers"],
    &["governance", "rotation"],
    &["monitor", "token"],
    &["emergency"],
    &["cli"],
];

/// Where printing is allowed.
const RENDER: &str = "cli/render";

const MAX_FILE_LINES: usize = 900;
const MAX_INLINE_TEST_LINES: usize = 500;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file below `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// A file of `src/` as a module path: `rotation/inflight.rs` → `rotation::inflight`,
/// `rotation/mod.rs` → `rotation`, `main.rs` → ``.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "main")) {
        parts.pop();
    }
    parts.join("::")
}

/// The text before the file's inline `#[cfg(test)] mod tests { … }`, if it has one at its end (a
/// `mod tests;` declaration is not one).
fn without_tests(text: &str) -> &str {
    text.find("\n#[cfg(test)]\nmod tests {")
        .map_or(text, |i| &text[..i])
}

/// Whether a file is test code only (a `tests.rs`, a `testing.rs` fixture module, or a
/// `*_tests.rs`): such files are judged as tests.
fn test_only(file: &Path) -> bool {
    let name = file.file_stem().unwrap().to_string_lossy();
    name == "tests" || name == "testing" || name.ends_with("_tests")
}

/// The module paths a file's code names: `crate::x::y`, the items of `use crate::{…}`, `super::x`
/// and `super::{…}` (resolved against `module`; `super::*` names the parent itself), and
/// `use child::…` of the file's own `mod child;`.
fn named_paths(module: &str, code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    // `prefix` followed by a path or a `{…}` list of paths, each joined to `base`.
    let after = |prefix: &str, base: &str, found: &mut BTreeSet<String>| {
        let join = |path: &str| {
            let path = path.trim_end_matches(':');
            match (base.is_empty(), path.is_empty()) {
                (_, true) => base.to_string(),
                (true, false) => path.to_string(),
                (false, false) => format!("{base}::{path}"),
            }
        };
        for (i, _) in code.match_indices(prefix) {
            if i > 0 && code[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                continue; // `my_crate::` is not `crate::`
            }
            let rest = &code[i + prefix.len()..];
            if let Some(list) = rest.strip_prefix('{') {
                let list = &list[..list.find('}').unwrap_or(list.len())];
                for item in list.split(',') {
                    let item: String = item.trim().chars().take_while(|&c| ident(c)).collect();
                    found.insert(join(&item));
                }
            } else {
                let path: String = rest.chars().take_while(|&c| ident(c)).collect();
                found.insert(join(&path));
            }
        }
    };
    after("crate::", "", &mut found);
    let parent = module.rsplit_once("::").map_or("", |(p, _)| p);
    after("super::", parent, &mut found);
    for line in code.lines() {
        let line = line.trim();
        if let Some(child) = line
            .strip_prefix("mod ")
            .or_else(|| line.strip_prefix("pub mod "))
            .and_then(|l| l.strip_suffix(';'))
        {
            let base = if module.is_empty() {
                child.to_string()
            } else {
                format!("{module}::{child}")
            };
            after(&format!("use {child}::"), &base, &mut found);
        }
    }
    found.remove("");
    found
}

/// The longest module in `modules` that `path` starts with.
fn resolve<'m>(modules: &'m BTreeSet<String>, path: &str) -> Option<&'m String> {
    let segments: Vec<&str> = path.split("::").collect();
    (1..=segments.len())
        .rev()
        .find_map(|n| modules.get(&segments[..n].join("::")))
}

/// The root crate's import graph between files, test modules left out.
fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = root().join("src");
    let files: Vec<PathBuf> = rust_files(&src)
        .into_iter()
        .filter(|f| !test_only(f))
        .collect();
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut graph = BTreeMap::new();
    for file in &files {
        let module = module_of(&src, file);
        let text = std::fs::read_to_string(file).unwrap();
        let edges = named_paths(&module, without_tests(&text))
            .iter()
            .filter_map(|path| resolve(&modules, path))
            .filter(|m| **m != module)
            .cloned()
            .collect();
        graph.insert(module, edges);
    }
    graph
}

#[test]
fn every_module_uses_only_lower_layers() {
    let layer_of = |module: &str| {
        let top = module.split("::").next().unwrap();
        LAYERS
            .iter()
            .position(|layer| layer.contains(&top))
            .unwrap_or_else(|| {
                panic!("src/{top} is in no layer of tests/layout.rs (and ARCHITECTURE.md)")
            })
    };
    let mut wrong = Vec::new();
    for (module, uses) in import_graph() {
        if module.is_empty() {
            continue; // main.rs sits above every layer
        }
        let top = module.split("::").next().unwrap();
        for used in uses {
            let used_top = used.split("::").next().unwrap();
            if used_top != top && !used.is_empty() && layer_of(&used) >= layer_of(&module) {
                wrong.push(format!("{module} uses {used}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layer order (see ARCHITECTURE.md):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_file_imports_itself_through_others() {
    let graph = import_graph();
    // Tarjan's strongly connected components: any with two or more files is a circle.
    struct Walk<'g> {
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        circles: Vec<Vec<&'g str>>,
    }
    impl<'g> Walk<'g> {
        fn visit(&mut self, v: &'g str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            for w in &self.graph[v] {
                let w = w.as_str();
                if !self.graph.contains_key(w) {
                    continue;
                }
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.stack.contains(&w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    self.circles.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        graph: &graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        circles: Vec::new(),
    };
    for v in graph.keys() {
        if !walk.index.contains_key(v.as_str()) {
            walk.visit(v);
        }
    }
    assert!(
        walk.circles.is_empty(),
        "import circles: {:?}",
        walk.circles
    );
}

#[test]
fn only_the_render_layer_prints() {
    let src = root().join("src");
    let mut offenders = Vec::new();
    for file in rust_files(&src) {
        let rel = file
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if rel.starts_with(RENDER) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in without_tests(&text).lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            let prints = [
                "println!",
                "eprintln!",
                "print!",
                "eprint!",
                "dbg!",
                "io::stdout",
                "io::stderr",
            ]
            .iter()
            .any(|p| code.contains(p));
            // The log subscriber main installs writes to stderr: that is not printing a report.
            let log_writer = rel == "main.rs" && code.contains("with_writer(std::io::stderr)");
            if prints && !log_writer {
                offenders.push(format!("src/{rel}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "only src/{RENDER} prints; route these through it:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn source_files_stay_small_and_inline_tests_move_out_when_long() {
    let workspace = root();
    let mut dirs = vec![workspace.join("src")];
    for group in ["providers", "tests"] {
        for entry in std::fs::read_dir(workspace.join(group)).unwrap() {
            let src = entry.unwrap().path().join("src");
            if src.is_dir() {
                dirs.push(src);
            }
        }
    }
    let mut long = Vec::new();
    for dir in dirs {
        for file in rust_files(&dir) {
            if test_only(&file) {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap();
            let rel = file.strip_prefix(&workspace).unwrap().display().to_string();
            let lines = text.lines().count();
            if lines > MAX_FILE_LINES {
                long.push(format!(
                    "{rel}: {lines} lines (at most {MAX_FILE_LINES}: make it a folder)"
                ));
            }
            let tests = text.lines().count() - without_tests(&text).lines().count();
            if tests > MAX_INLINE_TEST_LINES {
                long.push(format!(
                    "{rel}: an inline test module of {tests} lines (at most {MAX_INLINE_TEST_LINES}: move it to its own tests.rs)"
                ));
            }
        }
    }
    assert!(long.is_empty(), "{}", long.join("\n"));
}

#[test]
fn the_checks_see_what_they_check() {
    // A layout check that reads nothing would pass on any tree: make sure it reads this one.
    let graph = import_graph();
    assert!(graph.len() > 40, "{} modules", graph.len());
    assert!(graph["rotation::inflight"].contains("rotation::setup"));
    assert!(graph["cli::commands::rotate"].contains("rotation"));
    let named = named_paths(
        "a::b",
        "mod k;\nuse k::K;\nuse crate::{x::y, z};\nuse super::c;\nuse super::*;\nmy_crate::n();\ncrate::q::r()",
    );
    assert_eq!(
        named,
        BTreeSet::from(["a", "a::b::k::K", "a::c", "q::r", "x::y", "z"].map(String::from))
    );
}

/// Test files follow the same size rule: a test file past 900 lines holds more than one subject.
#[test]
fn test_files_stay_small_too() {
    let workspace = root();
    let mut files = rust_files(&workspace.join("tests"));
    for entry in std::fs::read_dir(workspace.join("providers")).unwrap() {
        let provider = entry.unwrap().path();
        let tests = provider.join("tests");
        if tests.is_dir() {
            files.extend(rust_files(&tests));
        }
        // Test modules beside the code (`tests.rs`, `*_tests.rs`) are test files too.
        if provider.join("src").is_dir() {
            files.extend(
                rust_files(&provider.join("src"))
                    .into_iter()
                    .filter(|f| test_only(f)),
            );
        }
    }
    files.extend(
        rust_files(&workspace.join("src"))
            .into_iter()
            .filter(|f| test_only(f)),
    );
    let long: Vec<String> = files
        .iter()
        .filter_map(|file| {
            let lines = std::fs::read_to_string(file).unwrap().lines().count();
            (lines > MAX_FILE_LINES).then(|| {
                format!(
                    "{}: {lines} lines (at most {MAX_FILE_LINES}: split it by subject)",
                    file.strip_prefix(&workspace).unwrap().display()
                )
            })
        })
        .collect();
    assert!(long.is_empty(), "{}", long.join("\n"));
}
