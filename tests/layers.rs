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

/// Every module path `code` names through `crate::` or `super::`, resolved: `module` is the
/// file's own module path (`src/import/torch/pickle.rs` is `import::torch::pickle`), and a
/// `super::` inside an inline `mod tests { .. }` counts from that inline module. Each result
/// goes one segment past what the path resolves to: `crate::a::b` gives `[a]`, a `super::x`
/// in `import::keras` gives `[import, x]`; `crate::{a::{x, y}, b}` gives `[a]` and `[b]`.
/// A `super::` that climbs out of the crate gives an empty path.
fn resolved_uses(module: &[String], code: &str) -> Vec<Vec<String>> {
    let inline = inline_modules(code);
    let mut out = Vec::new();
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    for (at, _) in code.match_indices("crate::") {
        // `my_crate::`, `$crate::` (macros) and `a::crate::` are other paths.
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| is_ident(c) || c == '$' || c == ':') {
            continue;
        }
        for segment in segments(&code[at + "crate::".len()..]) {
            out.push(vec![segment]);
        }
    }
    for (at, _) in code.match_indices("super::") {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| is_ident(c) || c == ':') {
            continue; // inside a chain counted from its start
        }
        let mut rest = &code[at..];
        let mut climbs = 0;
        while let Some(r) = rest.strip_prefix("super::") {
            climbs += 1;
            rest = r.trim_start();
        }
        let mut context: Vec<String> = module.to_vec();
        context.extend(
            (inline.iter())
                .filter(|(start, end, _)| (*start..*end).contains(&at))
                .map(|(_, _, name)| name.clone()),
        );
        if climbs > context.len() {
            out.push(Vec::new());
            continue;
        }
        let base = &context[..context.len() - climbs];
        for segment in segments(rest) {
            let mut path = base.to_vec();
            path.push(segment);
            out.push(path);
        }
    }
    out
}

/// The first segment of the path `rest` starts with, or of each path of a `{..}` group.
fn segments(rest: &str) -> Vec<String> {
    let rest = rest.trim_start();
    let Some(group) = rest.strip_prefix('{') else {
        return first_segment(rest).into_iter().collect();
    };
    let mut out = Vec::new();
    let (mut depth, mut part) = (0, String::new());
    for c in group.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.extend(first_segment(&part));
                part.clear();
                continue;
            }
            _ => {}
        }
        part.push(c);
    }
    out.extend(first_segment(&part));
    out
}

fn first_segment(path: &str) -> Option<String> {
    let name: String = (path.trim_start().chars())
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty() && name != "self").then_some(name)
}

/// The inline modules of `code` (`mod name { .. }`): where each body starts and ends, and its
/// name.
fn inline_modules(code: &str) -> Vec<(usize, usize, String)> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    for (at, _) in code.match_indices("mod ") {
        if at > 0 && (b[at - 1].is_ascii_alphanumeric() || b[at - 1] == b'_') {
            continue;
        }
        let rest = &code[at + 4..];
        let name: String = (rest.trim_start().chars())
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let after = rest.trim_start()[name.len()..].trim_start();
        if name.is_empty() || !after.starts_with('{') {
            continue; // `mod name;`: a file of its own
        }
        let open = code.len() - after.len();
        let mut depth = 0;
        let close = (code[open..].char_indices())
            .find(|&(_, c)| {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                depth == 0
            })
            .map_or(code.len(), |(i, _)| open + i);
        out.push((open, close, name));
    }
    out
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            // A folder with a Cargo.toml is a crate of its own (src/python, the Python
            // package's bindings): it uses the library from outside, through its public API.
            if !path.join("Cargo.toml").exists() {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path a file of `src/` stands for (`src/a/b.rs` and `src/a/b/mod.rs`: `[a, b]`);
/// `None` for the crate roots `lib.rs` and `main.rs`.
fn module_of(src: &Path, file: &Path) -> Option<Vec<String>> {
    let rel = file.strip_prefix(src).unwrap();
    if rel == Path::new("lib.rs") || rel == Path::new("main.rs") {
        return None;
    }
    let mut path: Vec<String> = (rel.with_extension("").components())
        .map(|c| c.as_os_str().to_str().unwrap().to_owned())
        .collect();
    if path.last().is_some_and(|l| l == "mod") {
        path.pop();
    }
    Some(path)
}

/// Every file of `src/` with its module path and its code (comments and strings left out).
fn sources() -> Vec<(PathBuf, Vec<String>, String)> {
    let src = Path::new(ROOT).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    (files.into_iter())
        .filter_map(|path| {
            let module = module_of(&src, &path)?;
            let code = code_only(&std::fs::read_to_string(&path).unwrap());
            Some((path.strip_prefix(ROOT).unwrap().to_owned(), module, code))
        })
        .collect()
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
    let mut modules = BTreeSet::from(["cli".to_owned()]);
    let mut wrong = Vec::new();
    for (file, module, code) in sources() {
        let own = &module[0];
        let Some(&own_rank) = rank.get(own.as_str()) else {
            wrong.push(format!(
                "{}: module {own} is not in docs/ARCHITECTURE.md's list",
                file.display()
            ));
            continue;
        };
        modules.insert(own.clone());
        if own == "cli" {
            continue; // the binary: its `crate::` is itself, and it reaches the library by name
        }
        // Another name for the crate root would hide every path below it.
        for alias in ["crate as", "extern crate self"] {
            if code.contains(alias) {
                wrong.push(format!(
                    "{}: `{alias}` hides paths from this test",
                    file.display()
                ));
            }
        }
        for path in resolved_uses(&module, &code) {
            let Some(used) = path.first() else {
                wrong.push(format!(
                    "{}: a super:: path climbs out of the crate",
                    file.display()
                ));
                continue;
            };
            match rank.get(used.as_str()) {
                _ if used == own => {}
                Some(&r) if r > own_rank => {}
                Some(&r) => wrong.push(format!(
                    "{}: {own} (layer {}) uses {used} (layer {}), which is not below it",
                    file.display(),
                    list[own_rank].0,
                    list[r].0,
                )),
                None => wrong.push(format!(
                    "{}: {own} uses {}, which is not a module of the list",
                    file.display(),
                    path.join("::")
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
/// reader, reads through `npy.rs` and `safetensors.rs`. Every file of a format's folder counts.
#[test]
fn importers_use_only_the_shared_part() {
    let mut wrong = Vec::new();
    let mut formats = BTreeSet::new();
    for (file, module, code) in sources() {
        let (Some("import"), Some(own)) = (module.first().map(String::as_str), module.get(1))
        else {
            continue; // not an importer, or the dispatcher
        };
        formats.insert(own.clone());
        let allowed: &[&str] = match own.as_str() {
            "source" => &[],
            "data" => &["source", "npy", "safetensors"],
            _ => &["source"],
        };
        for path in resolved_uses(&module, &code) {
            if path.first().map(String::as_str) != Some("import") {
                continue;
            }
            match path.get(1) {
                Some(used) if used == own || allowed.contains(&used.as_str()) => {}
                Some(used) => wrong.push(format!("{}: uses import::{used}", file.display())),
                None => wrong.push(format!("{}: uses the import dispatcher", file.display())),
            }
        }
    }
    let expected = [
        "data",
        "gguf",
        "keras",
        "npy",
        "onnx",
        "safetensors",
        "source",
        "torch",
    ];
    assert_eq!(
        formats.iter().collect::<Vec<_>>(),
        expected,
        "src/import/ changed"
    );
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
    let uses: BTreeSet<Vec<String>> = resolved_uses(&["verify".into()], &code)
        .into_iter()
        .collect();
    let names: Vec<&str> = uses.iter().map(|p| p[0].as_str()).collect();
    assert_eq!(names, ["format", "keys", "model", "tensor"]);
}

#[test]
fn super_paths_resolve_from_the_file_and_its_inline_modules() {
    let module: Vec<String> = ["import", "torch", "pickle"].map(String::from).to_vec();
    let code = code_only(
        "use super::{Machine, source};\n\
         fn f() { super::super::keras::is_keras(); }\n\
         mod tests { use super::*; fn g() { super::super::super::super::trust::X; } }\n\
         fn h() { super::super::super::super::x(); }",
    );
    let uses: Vec<String> = (resolved_uses(&module, &code).iter())
        .map(|p| p.join("::"))
        .collect();
    assert_eq!(
        uses,
        [
            "import::torch::Machine",
            "import::torch::source",
            "import::keras",
            "trust",
            "" // out of the crate
        ]
    );
    // In a top-level file, `super::` is the crate root.
    let top = resolved_uses(&["verify".into()], "use super::trust::Trust;");
    assert_eq!(top, [vec!["trust".to_owned()]]);
}
