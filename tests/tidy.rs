//! The house kept true to its map (in the manner of rust-analyzer's tidy tests).
//!
//! ARCHITECTURE.md says which module may import what: probe-rs only in its backend, rusqlite only
//! in the ledger, egui/eframe only in the window, the PostgreSQL client only in `central`, and no
//! format module importing a backend, the ledger or the station. These tests read every file of
//! `src/` and fail, naming the file and line, when an import crosses one of those rules, when a
//! file grows past 900 lines, or when a function outside tests grows past 120 lines.
//!
//! The checker is plain text matching over Rust source with comments and string literals blanked
//! out, so it also sees fully qualified paths (`probe_rs::Session`) and not only `use` lines.

use std::path::{Path, PathBuf};

/// Longest file allowed in `src/`.
const MAX_FILE_LINES: usize = 900;
/// Longest function allowed outside `#[cfg(test)]` code.
const MAX_FUNCTION_LINES: usize = 120;

/// What a module (a path prefix under `src/`) must never name.
struct Rule {
    /// Who the rule is for: files whose path (relative to `src/`) starts with one of these.
    applies_to: &'static [&'static str],
    /// Files exempt from it: paths that start with one of these.
    except: &'static [&'static str],
    /// Path roots that must not appear: `probe_rs` (a crate) or `crate::ledger` (a module).
    forbidden: &'static [&'static str],
    why: &'static str,
}

/// Every module under `src/`, for rules that apply to all but one home.
const EVERYWHERE: &[&str] = &[""];

/// The format modules: pure data and checks, no device I/O, no station, no ledger.
const FORMAT_MODULES: &[&str] =
    &["profile/", "image.rs", "identity", "manifest", "store.rs", "contract", "chip", "mbed_header", "fcc/"];

const RULES: &[Rule] = &[
    Rule {
        applies_to: EVERYWHERE,
        except: &["device/probe_rs/"],
        forbidden: &["probe_rs"],
        why: "only the probe-rs backend (src/device/probe_rs/) imports probe-rs",
    },
    Rule {
        applies_to: EVERYWHERE,
        except: &["ledger/"],
        forbidden: &["rusqlite"],
        why: "only the ledger (src/ledger/) imports rusqlite",
    },
    Rule {
        applies_to: EVERYWHERE,
        except: &["gui/"],
        forbidden: &["egui", "eframe", "egui_kittest", "egui_extras", "rodio", "cpal"],
        why: "only the window (src/gui/) imports egui/eframe and the audio stack",
    },
    Rule {
        applies_to: EVERYWHERE,
        except: &["central/"],
        forbidden: &["postgres", "tokio_postgres", "tokio_postgres_rustls"],
        why: "only the central ledger (src/central/) imports the PostgreSQL client",
    },
    Rule {
        applies_to: EVERYWHERE,
        except: &["trust/"],
        forbidden: &["cryptoki"],
        why: "only trust (src/trust/) talks to PKCS#11 tokens",
    },
    Rule {
        applies_to: FORMAT_MODULES,
        except: &[],
        // The seam's own types (`crate::device::TargetError`) are the vocabulary chip checks
        // answer in; the backends behind it are not.
        forbidden: &[
            "crate::device::sim",
            "crate::device::gdb",
            "crate::device::probe_rs",
            "crate::device::qemu",
            "crate::device::factory",
            "crate::device::console",
            "crate::station",
            "crate::ledger",
            "crate::central",
            "crate::gui",
            "crate::cli",
        ],
        why: "format modules are pure: they import no backend, station, ledger or front end",
    },
    Rule {
        applies_to: &["device/"],
        except: &[],
        forbidden: &["crate::station", "crate::ledger", "crate::central", "crate::gui", "crate::cli"],
        why: "the hardware seam knows nothing of the station, the ledger or the front ends",
    },
    Rule {
        applies_to: &["station/"],
        except: &[],
        forbidden: &["crate::gui", "crate::cli"],
        why: "the station is driven by the front ends and never reaches up into them",
    },
    Rule {
        applies_to: &["ledger/"],
        except: &[],
        forbidden: &["crate::station", "crate::device", "crate::central", "crate::gui", "crate::cli"],
        why: "the ledger is a store: it knows no station, backend or front end",
    },
    Rule {
        applies_to: &["central/"],
        except: &[],
        forbidden: &["crate::station", "crate::device", "crate::gui", "crate::cli"],
        why: "central reaches the local ledger only through Ledger and knows no station or backend",
    },
    Rule {
        applies_to: &["gui/"],
        except: &[],
        forbidden: &["crate::cli"],
        why: "the window and the CLI are two front ends; neither imports the other",
    },
];

fn source_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `src/`, as (path relative to `src/` with `/` separators, text).
fn source_files() -> Vec<(String, String)> {
    fn walk(directory: &Path, root: &Path, files: &mut Vec<(String, String)>) {
        let mut entries: Vec<_> = std::fs::read_dir(directory)
            .unwrap_or_else(|error| panic!("read {}: {error}", directory.display()))
            .map(|entry| entry.expect("directory entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, root, files);
            } else if path.extension().is_some_and(|extension| extension == "rs") {
                let relative =
                    path.strip_prefix(root).expect("under src").to_string_lossy().replace('\\', "/");
                let text = std::fs::read_to_string(&path)
                    .unwrap_or_else(|error| panic!("read {}: {error}", path.display()));
                files.push((relative, text));
            }
        }
    }
    let root = source_root();
    let mut files = Vec::new();
    walk(&root, &root, &mut files);
    assert!(files.len() > 20, "found only {} source files under {}", files.len(), root.display());
    files
}

/// The source with comments, string and char literals replaced by spaces (line structure kept),
/// so matching sees only code.
fn code_only(source: &str) -> String {
    let bytes = source.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        let next = bytes.get(index + 1).copied();
        if byte == b'/' && next == Some(b'/') {
            while index < bytes.len() && bytes[index] != b'\n' {
                out.push(b' ');
                index += 1;
            }
        } else if byte == b'/' && next == Some(b'*') {
            let mut depth = 0usize;
            loop {
                if index >= bytes.len() {
                    break;
                }
                if bytes[index] == b'/' && bytes.get(index + 1) == Some(&b'*') {
                    depth += 1;
                    out.extend_from_slice(b"  ");
                    index += 2;
                } else if bytes[index] == b'*' && bytes.get(index + 1) == Some(&b'/') {
                    depth -= 1;
                    out.extend_from_slice(b"  ");
                    index += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(if bytes[index] == b'\n' { b'\n' } else { b' ' });
                    index += 1;
                }
            }
        } else if byte == b'r'
            && matches!(next, Some(b'"') | Some(b'#'))
            && !is_ident_byte(out.last().copied())
        {
            // Raw string: r"..." or r#"..."#.
            let mut hashes = 0;
            let mut cursor = index + 1;
            while bytes.get(cursor) == Some(&b'#') {
                hashes += 1;
                cursor += 1;
            }
            if bytes.get(cursor) != Some(&b'"') {
                out.push(byte);
                index += 1;
                continue;
            }
            let closing: Vec<u8> = std::iter::once(b'"').chain(std::iter::repeat_n(b'#', hashes)).collect();
            out.extend(std::iter::repeat_n(b' ', cursor + 1 - index));
            index = cursor + 1;
            while index < bytes.len() && !bytes[index..].starts_with(&closing) {
                out.push(if bytes[index] == b'\n' { b'\n' } else { b' ' });
                index += 1;
            }
            out.extend(std::iter::repeat_n(b' ', closing.len().min(bytes.len() - index)));
            index += closing.len();
        } else if byte == b'"' {
            out.push(b' ');
            index += 1;
            while index < bytes.len() && bytes[index] != b'"' {
                if bytes[index] == b'\\' {
                    out.push(b' ');
                    index += 1;
                }
                if index < bytes.len() {
                    out.push(if bytes[index] == b'\n' { b'\n' } else { b' ' });
                    index += 1;
                }
            }
            out.push(b' ');
            index += 1;
        } else if byte == b'\'' && is_char_literal(&bytes[index..]) {
            let length = char_literal_length(&bytes[index..]);
            out.extend(std::iter::repeat_n(b' ', length));
            index += length;
        } else {
            out.push(byte);
            index += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn is_ident_byte(byte: Option<u8>) -> bool {
    byte.is_some_and(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
}

/// `'a'`, `'\n'`, `'\''`, `'\u{1F600}'` and multi-byte chars, but not lifetimes (`'a`).
fn is_char_literal(bytes: &[u8]) -> bool {
    char_literal_length(bytes) > 0
}

fn char_literal_length(bytes: &[u8]) -> usize {
    if bytes.get(1) == Some(&b'\\') {
        return bytes.iter().skip(2).position(|&byte| byte == b'\'').map_or(0, |end| end + 3);
    }
    // One UTF-8 character then a closing quote.
    let text = String::from_utf8_lossy(&bytes[1..bytes.len().min(6)]);
    match text.chars().next() {
        Some(character) if bytes.get(1 + character.len_utf8()) == Some(&b'\'') => character.len_utf8() + 2,
        _ => 0,
    }
}

/// Whether `code` names the path root `root` (`probe_rs`, `crate::ledger`) as a path, in a `use`
/// or an expression, including grouped forms such as `use crate::{ledger::Ledger, ...}`.
fn names_path(code: &str, root: &str) -> bool {
    let direct = find_path(code, root);
    if direct {
        return true;
    }
    // `crate::{a, ledger::X}` and `crate::{\n ledger,` forms.
    if let Some(module) = root.strip_prefix("crate::") {
        let mut rest = code;
        while let Some(start) = rest.find("crate::{") {
            let group = &rest[start + "crate::{".len()..];
            let end = matching_brace(group).unwrap_or(group.len());
            let inner = &group[..end];
            if inner
                .split([',', '{', '}', ' ', '\n', '\t'])
                .any(|item| item == module || item.starts_with(&format!("{module}::")))
            {
                return true;
            }
            rest = &group[end..];
        }
    }
    false
}

/// `root` followed by `::` or a word end, and not preceded by an identifier character or `::`.
fn find_path(code: &str, root: &str) -> bool {
    let bytes = code.as_bytes();
    let mut from = 0;
    while let Some(offset) = code[from..].find(root) {
        let start = from + offset;
        let end = start + root.len();
        let before_ok = start == 0 || !(is_ident_byte(Some(bytes[start - 1])) || bytes[start - 1] == b':');
        let after = bytes.get(end).copied();
        let after_ok = !is_ident_byte(after);
        // `probe_rs` as a crate: `use probe_rs`, `probe_rs::`, `extern crate probe_rs`.
        if before_ok && after_ok {
            let followed_by_path = code[end..].starts_with("::");
            let line_start = code[..start].rfind('\n').map_or(0, |newline| newline + 1);
            let line = code[line_start..].lines().next().unwrap_or("");
            let is_use = line.trim_start().starts_with("use ") || line.trim_start().starts_with("pub use ");
            let is_extern = line.contains("extern crate");
            if followed_by_path || is_use || is_extern || root.contains("::") {
                return true;
            }
        }
        from = end;
    }
    false
}

/// Index of the `}` closing the group whose `{` was just consumed.
fn matching_brace(text: &str) -> Option<usize> {
    let mut depth = 1usize;
    for (index, character) in text.char_indices() {
        match character {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(index);
                }
            }
            _ => {}
        }
    }
    None
}

/// The import-rule violations in one file: "path:line: names X (why)".
fn import_violations(relative_path: &str, source: &str) -> Vec<String> {
    let code = code_only(source);
    let mut problems = Vec::new();
    for rule in RULES {
        let applies = rule.applies_to.iter().any(|prefix| relative_path.starts_with(prefix));
        let exempt = rule.except.iter().any(|prefix| relative_path.starts_with(prefix));
        if !applies || exempt {
            continue;
        }
        for root in rule.forbidden {
            // Report the first line that names it, for a precise message.
            for (line_index, line) in code.lines().enumerate() {
                if names_path(line, root) {
                    problems.push(format!(
                        "src/{relative_path}:{}: names `{root}` ({})",
                        line_index + 1,
                        rule.why
                    ));
                    break;
                }
            }
            // Grouped imports spanning lines: check the whole file too.
            if !problems.iter().any(|problem| {
                problem.starts_with(&format!("src/{relative_path}:"))
                    && problem.contains(&format!("`{root}`"))
            }) && names_path(&code, root)
            {
                problems
                    .push(format!("src/{relative_path}: names `{root}` in a grouped import ({})", rule.why));
            }
        }
    }
    problems
}

/// Functions longer than the limit outside `#[cfg(test)]` code: "path:line: fn NAME is N lines".
fn long_functions(relative_path: &str, source: &str) -> Vec<String> {
    let code = code_only(source);
    let lines: Vec<&str> = code.lines().collect();
    let test_start =
        lines.iter().position(|line| line.trim_start().starts_with("#[cfg(test)]")).unwrap_or(lines.len());
    let mut problems = Vec::new();
    let mut index = 0;
    while index < test_start {
        let trimmed = lines[index].trim_start();
        let is_fn = [
            "fn ",
            "pub fn ",
            "pub(crate) fn ",
            "pub(super) fn ",
            "async fn ",
            "pub async fn ",
            "const fn ",
            "pub const fn ",
            "unsafe fn ",
            "pub unsafe fn ",
        ]
        .iter()
        .any(|prefix| trimmed.starts_with(prefix));
        if !is_fn {
            index += 1;
            continue;
        }
        let name: String = trimmed
            .split("fn ")
            .nth(1)
            .unwrap_or("")
            .chars()
            .take_while(|character| character.is_alphanumeric() || *character == '_')
            .collect();
        // Find the body's opening brace (a declaration without a body ends with `;`).
        let mut depth = 0usize;
        let mut opened = false;
        let mut end = None;
        'scan: for (offset, line) in lines[index..].iter().enumerate() {
            for character in line.chars() {
                match character {
                    ';' if !opened && depth == 0 => break 'scan,
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => {
                        depth = depth.saturating_sub(1);
                        if opened && depth == 0 {
                            end = Some(index + offset);
                            break 'scan;
                        }
                    }
                    _ => {}
                }
            }
        }
        match end {
            Some(end) => {
                let length = end - index + 1;
                if length > MAX_FUNCTION_LINES {
                    problems.push(format!(
                        "src/{relative_path}:{}: fn {name} is {length} lines (limit {MAX_FUNCTION_LINES})",
                        index + 1
                    ));
                }
                // Nested functions are counted inside their parent only.
                index = end + 1;
            }
            None => index += 1,
        }
    }
    problems
}

#[test]
fn no_module_imports_across_the_rules_of_architecture_md() {
    let problems: Vec<String> =
        source_files().iter().flat_map(|(path, text)| import_violations(path, text)).collect();
    assert!(problems.is_empty(), "imports that cross ARCHITECTURE.md's rules:\n{}", problems.join("\n"));
}

#[test]
fn no_source_file_is_longer_than_the_limit() {
    let problems: Vec<String> = source_files()
        .iter()
        .filter(|(_, text)| text.lines().count() > MAX_FILE_LINES)
        .map(|(path, text)| format!("src/{path}: {} lines (limit {MAX_FILE_LINES})", text.lines().count()))
        .collect();
    assert!(problems.is_empty(), "files to split:\n{}", problems.join("\n"));
}

#[test]
fn no_function_outside_tests_is_longer_than_the_limit() {
    let problems: Vec<String> =
        source_files().iter().flat_map(|(path, text)| long_functions(path, text)).collect();
    assert!(problems.is_empty(), "functions to split:\n{}", problems.join("\n"));
}

#[test]
fn every_module_is_named_in_architecture_md() {
    let map = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md"))
        .expect("read ARCHITECTURE.md");
    let missing: Vec<String> = source_files()
        .iter()
        .map(|(path, _)| path.clone())
        .filter(|path| !is_named_in_map(&map, path))
        .collect();
    assert!(missing.is_empty(), "source files ARCHITECTURE.md does not name:\n{}", missing.join("\n"));
}

/// Whether the map names `path` (relative to `src/`): a module root (`mod.rs`) by its folder
/// (`device/gdb/`), any other file by its name in a section (a `###` heading and its text) that
/// also names its folder, so `error.rs` in the trust section does not count for `device/gdb/`.
fn is_named_in_map(map: &str, path: &str) -> bool {
    let path = Path::new(path);
    let file_name = path.file_name().expect("file name").to_string_lossy().into_owned();
    let folder = path.parent().map(|parent| parent.to_string_lossy().into_owned()).unwrap_or_default();
    if matches!(file_name.as_str(), "lib.rs" | "main.rs") && folder.is_empty() {
        return true;
    }
    // A folder module is named like a file of its parent folder: `gdb/` in the `device/` section.
    let (folder, token) = if file_name == "mod.rs" {
        let module_folder = Path::new(&folder);
        let last = module_folder.file_name().expect("folder name").to_string_lossy().into_owned();
        let parent =
            module_folder.parent().map(|parent| parent.to_string_lossy().into_owned()).unwrap_or_default();
        (parent, format!("{last}/"))
    } else {
        (folder, file_name)
    };
    if folder.is_empty() {
        return map.contains(&token);
    }
    let last_folder = Path::new(&folder).file_name().expect("folder name").to_string_lossy().into_owned();
    map.split("\n### ").any(|section| {
        section.contains(&token)
            && (section.contains(&format!("{folder}/")) || section.contains(&format!("{last_folder}/")))
    })
}

#[test]
fn the_map_check_wants_each_file_in_its_own_folders_section() {
    let map =
        "### `src/trust/` — keys\n`error.rs`, `key.rs`\n\n### `src/device/` — seam\n`gdb/`: `client.rs`\n";
    assert!(is_named_in_map(map, "trust/error.rs"));
    assert!(is_named_in_map(map, "device/gdb/client.rs"));
    assert!(is_named_in_map(map, "device/gdb/mod.rs"));
    assert!(!is_named_in_map(map, "device/gdb/error.rs"));
    assert!(!is_named_in_map(map, "ledger/mod.rs"));
}

// The checker itself, on made-up sources: each rule must be able to fail.

#[test]
fn the_checker_flags_probe_rs_in_the_ledger() {
    let problems = import_violations("ledger/write.rs", "use probe_rs::Session;\nfn main() {}\n");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("src/ledger/write.rs:1") && problems[0].contains("probe_rs"),
        "{problems:?}"
    );
}

#[test]
fn the_checker_flags_qualified_paths_and_grouped_imports() {
    assert!(
        !import_violations("station/line.rs", "fn f() { let _ = rusqlite::Connection::open(\"x\"); }")
            .is_empty()
    );
    assert!(
        !import_violations("profile/raw.rs", "use crate::{identity::Serial,\n    device::probe_rs::chip};")
            .is_empty()
    );
    assert!(!import_violations("store.rs", "use crate::ledger::Ledger;").is_empty());
    assert!(!import_violations("chip/lock.rs", "use crate::device::probe_rs::session;").is_empty());
    assert!(import_violations("chip/lock.rs", "use crate::device::TargetError;").is_empty());
    assert!(!import_violations("device/sim/mod.rs", "use crate::station::events::EventSink;").is_empty());
}

#[test]
fn the_checker_ignores_comments_strings_and_lookalike_names() {
    let source = "// probe_rs is only used in the backend\nconst NAME: &str = \"rusqlite\";\nfn probe_rs_like() {}\nlet my_egui = 1;\n/* use crate::ledger; */\n";
    assert!(import_violations("ledger/write.rs", source).is_empty());
    assert!(import_violations("station/job.rs", source).is_empty());
    assert!(import_violations("profile/mod.rs", source).is_empty());
}

#[test]
fn the_checker_allows_each_home_its_own_crate() {
    assert!(import_violations("device/probe_rs/session.rs", "use probe_rs::Session;").is_empty());
    assert!(import_violations("ledger/write.rs", "use rusqlite::Connection;").is_empty());
    assert!(import_violations("gui/app.rs", "use eframe::egui;").is_empty());
    assert!(import_violations("central/lease.rs", "use postgres::Client;").is_empty());
}

#[test]
fn the_function_length_check_counts_bodies_and_skips_tests() {
    let long_body: String = (0..130).map(|index| format!("    let _x{index} = {index};\n")).collect();
    let source = format!(
        "fn short() {{ let _ = 1; }}\nfn long() {{\n{long_body}}}\n#[cfg(test)]\nmod tests {{\n    fn also_long() {{\n{long_body}    }}\n}}\n"
    );
    let problems = long_functions("station/job.rs", &source);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("fn long is 132 lines"), "{problems:?}");
}
