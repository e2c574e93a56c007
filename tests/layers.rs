//! The layer list of docs/ARCHITECTURE.md holds: no module of `src/` uses a module listed above
//! it, every module is listed, and every listed name is a module. Reads the source text itself
//! (every `crate::` path outside comments and strings), so that a change that brings a loop
//! back fails here, naming the file and both modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The modules of docs/ARCHITECTURE.md, top first, with their layers.
fn layer_list() -> Vec<(u32, String)> {
    let doc = std::fs::read_to_string(Path::new(ROOT).join("docs/ARCHITECTURE.md")).unwrap();
    doc.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next()? == "layer").then_some(())?;
            let layer = words.next()?.parse().ok()?;
            Some((layer, words.next()?.to_owned()))
        })
        .collect()
}

/// `text` without comments, string and character literals (each replaced by a space), so that
/// paths in documentation or messages do not count as uses.
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            i += rest.find('\n').unwrap_or(rest.len());
        } else if rest.starts_with("/*") {
            // Rust block comments nest.
            let mut depth = 0;
            while i < b.len() {
                if text[i..].starts_with("/*") {
                    depth += 1;
                    i += 2;
                } else if text[i..].starts_with("*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if let Some(hashes) = raw_string_start(rest) {
            let close = format!("\"{}", "#".repeat(hashes));
            let body = i + 2 + hashes;
            i = text[body..]
                .find(&close)
                .map_or(b.len(), |k| body + k + close.len());
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else if b[i] == b'\'' && b.get(i + 1) == Some(&b'\\') {
            i += 2;
            while i < b.len() && b[i] != b'\'' {
                i += 1;
            }
            i += 1;
        } else if b[i] == b'\'' && rest.chars().nth(2) == Some('\'') {
            i += 1 + rest[1..].chars().next().unwrap().len_utf8() + 1;
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
            continue;
        }
        out.push(' ');
    }
    out
}

/// `r"`, `r#"`, `br##"`...: the number of hashes, if `s` starts a raw string.
fn raw_string_start(s: &str) -> Option<usize> {
    let s = s.strip_prefix('b').unwrap_or(s);
    let s = s.strip_prefix('r')?;
    let hashes = s.len() - s.trim_start_matches('#').len();
    s[hashes..].starts_with('"').then_some(hashes)
}

/// The first path segment after every `crate::` in `code`: `crate::a::b` and
/// `crate::{a::{x, y}, b}` give `a` (and `b`).
fn crate_uses(code: &str) -> BTreeSet<String> {
    uses_after(code, "crate::")
}

/// The first path segment after every `prefix` (`crate::`, `super::`) in `code`.
fn uses_after(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut uses = BTreeSet::new();
    for (at, _) in code.match_indices(prefix) {
        // `nnsign_crate::` or `my_crate::` are other paths.
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = code[at + prefix.len()..].trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut part = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        uses.extend(first_segment(&part));
                        part.clear();
                        continue;
                    }
                    _ => {}
                }
                part.push(c);
            }
            uses.extend(first_segment(&part));
        } else {
            uses.extend(first_segment(rest));
        }
    }
    uses
}

fn first_segment(path: &str) -> Option<String> {
    let name: String = (path.trim_start().chars())
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty() && name != "self").then_some(name)
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`cli` for the binary's `main.rs`), and
/// `None` for `lib.rs`, which only declares them.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?;
    match first {
        "lib.rs" => None,
        "main.rs" => Some("cli".into()),
        f => Some(f.trim_end_matches(".rs").to_owned()),
    }
}

#[test]
fn no_module_uses_one_listed_above_it() {
    let list = layer_list();
    assert!(
        list.len() > 20,
        "docs/ARCHITECTURE.md lists {} modules",
        list.len()
    );
    let rank: BTreeMap<&str, usize> = (list.iter().enumerate())
        .map(|(i, (_, m))| (m.as_str(), i))
        .collect();
    assert_eq!(rank.len(), list.len(), "a module is listed twice");
    assert!(
        list.windows(2).all(|w| w[0].0 >= w[1].0),
        "layers must go down the list: {list:?}"
    );
    let src = Path::new(ROOT).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut modules = BTreeSet::new();
    let mut wrong = Vec::new();
    for path in &files {
        let file = path.strip_prefix(ROOT).unwrap();
        let Some(module) = module_of(&src, path) else {
            continue;
        };
        let Some(&own) = rank.get(module.as_str()) else {
            wrong.push(format!(
                "{}: module {module} is not in docs/ARCHITECTURE.md's list",
                file.display()
            ));
            continue;
        };
        modules.insert(module.clone());
        let code = code_only(&std::fs::read_to_string(path).unwrap());
        for used in crate_uses(&code) {
            match rank.get(used.as_str()) {
                Some(&r) if r > own => {}
                Some(_) if used == module => {}
                Some(_) => wrong.push(format!(
                    "{}: {module} (layer {}) uses {used} (layer {}), which is not below it",
                    file.display(),
                    list[own].0,
                    list[rank[used.as_str()]].0,
                )),
                None => wrong.push(format!(
                    "{}: {module} uses crate::{used}, which is not in the list",
                    file.display()
                )),
            }
        }
    }
    for (_, listed) in &list {
        if !modules.contains(listed) {
            wrong.push(format!("{listed} is listed but src/ has no such module"));
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
}

/// docs/ARCHITECTURE.md, "Folders": an importer uses the shared part of `src/import/` and the
/// layers below, never the dispatcher (`mod.rs`) or another format; `data.rs`, the `--input`
/// reader, reads through `npy.rs`. Only the file's own top-level `use super::` lines count
/// (test modules inside a file say `super::` of the file itself).
#[test]
fn importers_use_only_the_shared_part() {
    let dir = Path::new(ROOT).join("src/import");
    let mut wrong = Vec::new();
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let (name, file) = match path.extension() {
            Some(e) if e == "rs" => (path.file_stem().unwrap().to_owned(), path.clone()),
            None if path.is_dir() => (path.file_name().unwrap().to_owned(), path.join("mod.rs")),
            _ => continue,
        };
        let name = name.to_str().unwrap();
        if name == "mod" || name == "source" {
            continue;
        }
        let code = code_only(&std::fs::read_to_string(&file).unwrap());
        let top: String = (code.lines())
            .filter(|l| l.starts_with("use super::") || l.starts_with("pub use super::"))
            .collect::<Vec<_>>()
            .join("\n");
        let allowed: &[&str] = match name {
            "data" => &["source", "npy"],
            _ => &["source"],
        };
        for used in uses_after(&top, "super::") {
            if !allowed.contains(&used.as_str()) {
                wrong.push(format!("src/import/{name}: uses super::{used}"));
            }
        }
        if !crate_uses(&code).is_disjoint(&BTreeSet::from(["import".to_owned()])) {
            wrong.push(format!("src/import/{name}: uses crate::import"));
        }
        checked += 1;
    }
    assert!(checked >= 7, "only {checked} importers found");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn paths_in_comments_and_strings_do_not_count_but_nested_groups_do() {
    let code = code_only(
        r##"use crate::{format::{Arch, DType}, keys::{self, hex}};
        // crate::trust in a comment
        /* crate::pack /* nested */ crate::scan */
        let s = "crate::diff \" crate::load";
        let r = r#"crate::unpack"#;
        let c = '"'; let q = '\''; fn f<'a>(x: &'a str) {}
        let v = crate::tensor::Value::F32; let w = my_crate::x; use crate::model;"##,
    );
    let uses: Vec<String> = crate_uses(&code).into_iter().collect();
    assert_eq!(uses, ["format", "keys", "model", "tensor"]);
}
