//! The repository's documentation links stay inside the repository (issue 12: the README's
//! behaviour-contract link pointed at `../shared/spec/behaviour.md`, outside it). Every
//! relative markdown link of README.md, the other top-level *.md files and docs/*.md must name
//! a file or directory that exists inside the repository, and a `#fragment` must name a
//! heading of its target.

use std::path::{Component, Path, PathBuf};

/// The workspace root (this crate is `targets/cli`).
fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .expect("targets/cli has a grandparent")
        .to_path_buf()
}

/// The markdown files whose links are checked.
fn documents(root: &Path) -> Vec<PathBuf> {
    let mut docs = Vec::new();
    for dir in [root.to_path_buf(), root.join("docs")] {
        let mut here: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("directory entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "md"))
            .collect();
        here.sort();
        docs.extend(here);
    }
    docs
}

/// The text without fenced code blocks and inline code spans (a link written inside code is
/// not a link). Lines are kept so positions stay readable.
fn prose(markdown: &str) -> String {
    let mut out = String::new();
    let mut fence: Option<&str> = None;
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        match fence {
            Some(f) if trimmed.starts_with(f) => fence = None,
            Some(_) => {}
            None if trimmed.starts_with("```") => fence = Some("```"),
            None if trimmed.starts_with("~~~") => fence = Some("~~~"),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    // A code span opens with a run of N backticks and closes at the next run of exactly N.
    let chars: Vec<char> = out.chars().collect();
    let mut text = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            text.push(chars[i]);
            i += 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|&&c| c == '`').count();
        let mut j = i + run;
        let mut close = None;
        while j < chars.len() {
            if chars[j] == '`' {
                let r = chars[j..].iter().take_while(|&&c| c == '`').count();
                if r == run {
                    close = Some(j + r);
                    break;
                }
                j += r;
            } else {
                j += 1;
            }
        }
        match close {
            Some(end) => i = end,
            None => {
                // An unmatched run is literal text.
                text.extend(&chars[i..i + run]);
                i += run;
            }
        }
    }
    text
}

/// Every link target: inline `[text](target "title")`, images, and reference definitions
/// `[id]: target`.
fn link_targets(markdown: &str) -> Vec<String> {
    let text = prose(markdown);
    let mut targets = Vec::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let mut depth = 0usize;
        let mut end = after.len();
        for (k, c) in after.char_indices() {
            match c {
                '(' => depth += 1,
                ')' if depth == 0 => {
                    end = k;
                    break;
                }
                ')' => depth -= 1,
                '\n' => {
                    end = k;
                    break;
                }
                _ => {}
            }
        }
        let inner = after[..end].trim();
        let target = if let Some(stripped) = inner.strip_prefix('<') {
            stripped.split('>').next().unwrap_or_default()
        } else {
            inner.split_whitespace().next().unwrap_or_default()
        };
        targets.push(target.to_string());
        rest = &after[end.min(after.len())..];
    }
    for line in text.lines() {
        let l = line.trim_start();
        if let Some(close) = l.strip_prefix('[').and_then(|r| r.find("]:")) {
            let target = l[close + 3..].split_whitespace().next().unwrap_or_default();
            targets.push(target.trim_matches(|c| c == '<' || c == '>').to_string());
        }
    }
    targets
}

/// Whether `target` leaves the repository for the web (or mail): not checked here.
fn is_external(target: &str) -> bool {
    let scheme = target.split_once(':').map(|(s, _)| s);
    scheme.is_some_and(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)))
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(markdown: &str) -> Vec<String> {
    prose_keep_code_text(markdown)
        .lines()
        .filter_map(|l| {
            let t = l.trim_start();
            let level = t.chars().take_while(|&c| c == '#').count();
            (1..=6)
                .contains(&level)
                .then(|| t[level..].strip_prefix(' '))
                .flatten()
                .map(|h| slug(&h.replace('`', "")))
        })
        .collect()
}

/// The text without fenced code blocks (headings may hold code spans; their text counts).
fn prose_keep_code_text(markdown: &str) -> String {
    let mut out = String::new();
    let mut in_fence = false;
    for line in markdown.lines() {
        let t = line.trim_start();
        if t.starts_with("```") || t.starts_with("~~~") {
            in_fence = !in_fence;
            continue;
        }
        if !in_fence {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// `base/rel` with `.` and `..` folded, without touching the file system (so a link that
/// climbs out of the repository is caught even when the file exists outside it).
fn join_lexically(base: &Path, rel: &str) -> PathBuf {
    let mut out = PathBuf::new();
    for c in base.join(rel).components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// What is wrong with one link of `doc`, if anything.
fn check_link(root: &Path, doc: &Path, target: &str) -> Option<String> {
    if target.is_empty() {
        return Some("empty link target".into());
    }
    if is_external(target) {
        return None;
    }
    let (path_part, fragment) = match target.split_once('#') {
        Some((p, f)) => (p, Some(f)),
        None => (target, None),
    };
    if path_part.starts_with('/') {
        return Some(format!(
            "{target}: absolute path (use a path relative to the file)"
        ));
    }
    let dir = doc.parent().unwrap_or(root);
    let resolved = if path_part.is_empty() {
        doc.to_path_buf()
    } else {
        join_lexically(dir, path_part)
    };
    if !resolved.starts_with(root) {
        return Some(format!("{target}: points outside the repository"));
    }
    if !resolved.exists() {
        return Some(format!("{target}: {} does not exist", resolved.display()));
    }
    if let Some(frag) = fragment.filter(|f| !f.is_empty()) {
        if resolved.extension().is_some_and(|x| x == "md") {
            let text = std::fs::read_to_string(&resolved).unwrap_or_default();
            if !anchors(&text).iter().any(|a| a == frag) {
                return Some(format!("{target}: no heading #{frag} in {}", resolved.display()));
            }
        }
    }
    None
}

#[test]
fn every_relative_link_of_the_readme_and_docs_resolves_inside_the_repository() {
    let root = repo_root();
    let docs = documents(&root);
    assert!(
        docs.iter().any(|d| d.ends_with("README.md"))
            && docs.iter().any(|d| d.ends_with("docs/behaviour.md")),
        "README.md and docs/behaviour.md are checked: {docs:?}"
    );
    let mut problems = Vec::new();
    let mut checked = 0;
    for doc in &docs {
        let text = std::fs::read_to_string(doc).unwrap_or_else(|e| panic!("{}: {e}", doc.display()));
        for target in link_targets(&text) {
            checked += 1;
            if let Some(p) = check_link(&root, doc, &target) {
                problems.push(format!(
                    "{}: {p}",
                    doc.strip_prefix(&root).unwrap_or(doc).display()
                ));
            }
        }
    }
    assert!(
        checked >= 5,
        "the README links the contract, results and benchmarks ({checked} links)"
    );
    assert!(problems.is_empty(), "broken links:\n{}", problems.join("\n"));
}

#[test]
fn the_readme_links_the_contract_inside_the_repository() {
    let root = repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    assert!(
        link_targets(&readme).iter().any(|t| t == "docs/behaviour.md"),
        "the README links docs/behaviour.md"
    );
}

#[test]
fn the_link_check_catches_links_that_leave_the_repository_or_name_nothing() {
    let root = repo_root();
    let doc = root.join("README.md");
    let sample = "The contract is [`behaviour.md`](../shared/spec/behaviour.md).\n\
        See [results](tests/fleet/RESULTS.md), [gone](docs/nothing-here.md),\n\
        [web](https://example.com/x), ![img](</docs/a b.png>), [bad anchor](docs/behaviour.md#no-such-heading),\n\
        [good anchor](docs/behaviour.md#the-backend-contract), `[in code](nowhere.md)`.\n\
        ```\n[in a fence](nowhere-either.md)\n```\n\
        [ref]: BENCHMARKS.md \"title\"\n";
    let targets = link_targets(sample);
    assert_eq!(
        targets,
        [
            "../shared/spec/behaviour.md",
            "tests/fleet/RESULTS.md",
            "docs/nothing-here.md",
            "https://example.com/x",
            "/docs/a b.png",
            "docs/behaviour.md#no-such-heading",
            "docs/behaviour.md#the-backend-contract",
            "BENCHMARKS.md",
        ]
    );
    let verdicts: Vec<bool> = targets
        .iter()
        .map(|t| check_link(&root, &doc, t).is_none())
        .collect();
    assert_eq!(verdicts, [false, true, false, true, false, false, true, true]);
    assert_eq!(
        slug("What each platform verifies (R14)"),
        "what-each-platform-verifies-r14"
    );
}
