//! Every `multifair ...` command the README and the docs show (in ```sh blocks, lines joined
//! at a trailing backslash; `cargo run --release [--features tch] -- ...` too) parses with the
//! command line as it is; a command that has `--dry-run` and names no placeholder (a word in
//! capitals such as DIR) also runs with it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::scratch;

/// The Markdown files a user reads.
fn documents(root: &Path) -> Vec<PathBuf> {
    let mut files = vec![root.join("README.md"), root.join("experiments/README.md")];
    for folder in ["docs", "datasets"] {
        for e in std::fs::read_dir(root.join(folder)).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == "md") {
                files.push(e.path());
            }
        }
    }
    files.sort();
    files
}

/// (line number, arguments after `multifair`) of each command in the file's shell blocks.
fn commands(text: &str) -> Vec<(usize, Vec<String>)> {
    let (mut found, mut in_shell, mut pending) = (Vec::new(), false, None::<(usize, String)>);
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if let Some(fence) = trimmed.strip_prefix("```") {
            in_shell = !in_shell && matches!(fence, "sh" | "bash" | "shell");
            continue;
        }
        if !in_shell {
            continue;
        }
        let (start, mut joined) = pending.take().unwrap_or((i + 1, String::new()));
        joined.push_str(trimmed.trim_start_matches("$ "));
        if let Some(head) = joined.strip_suffix('\\') {
            pending = Some((start, format!("{head} ")));
            continue;
        }
        let joined = joined.split(" #").next().unwrap_or_default().to_owned();
        for prefix in [
            "multifair ",
            "cargo run --release -- ",
            "cargo run --release --features tch -- ",
        ] {
            if let Some(rest) = joined.strip_prefix(prefix) {
                found.push((start, split(rest)));
            }
        }
    }
    found
}

/// Shell words: whitespace-separated, single or double quotes grouping.
fn split(line: &str) -> Vec<String> {
    let (mut words, mut word, mut quote, mut started) = (Vec::new(), String::new(), None, false);
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => (quote, started) = (Some(c), true),
            (None, c) if c.is_whitespace() => {
                if started || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                started = false;
            }
            (None, c) => word.push(c),
        }
    }
    if started || !word.is_empty() {
        words.push(word);
    }
    words
}

/// A word the reader substitutes: three capitals in a row (DIR, RUN_DIR, PREDICTIONS.csv), or a
/// path of their own (path/to/cohort, my-spec.toml).
fn placeholder(word: &str) -> bool {
    if word.starts_with("path/to") || word.starts_with("my-") {
        return true;
    }
    let mut run = 0;
    word.chars().any(|c| {
        run = if c.is_ascii_uppercase() { run + 1 } else { 0 };
        run >= 3
    })
}

#[test]
fn every_documented_command_parses_and_dry_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scratch = scratch("docs");
    let (mut checked, mut failures) = (0, Vec::new());
    for file in documents(root) {
        let text = std::fs::read_to_string(&file).unwrap();
        for (line, args) in commands(&text) {
            let at = format!(
                "{}:{line}: multifair {}",
                file.strip_prefix(root).unwrap().display(),
                args.join(" ")
            );
            let parsed = Command::new(env!("CARGO_BIN_EXE_multifair"))
                .args(&args)
                .env("MULTIFAIR_PARSE_ONLY", "1")
                .output()
                .unwrap();
            checked += 1;
            if !parsed.status.success() {
                failures.push(format!(
                    "{at}\n    {}",
                    String::from_utf8_lossy(&parsed.stderr).trim()
                ));
                continue;
            }
            let dry = ["sweep", "tune", "reproduce", "train"].contains(&args[0].as_str());
            if dry
                && !args.iter().any(|a| placeholder(a))
                && !args.contains(&"--dry-run".to_owned())
            {
                // Relative spec paths as the repository's; outputs in a scratch folder.
                let args: Vec<String> = (args.iter())
                    .map(
                        |a| match a.starts_with("experiments/") || a.starts_with("datasets/") {
                            true => root.join(a).display().to_string(),
                            false => a.clone(),
                        },
                    )
                    .collect();
                let run = Command::new(env!("CARGO_BIN_EXE_multifair"))
                    .args(&args)
                    .arg("--dry-run")
                    .current_dir(&scratch)
                    .output()
                    .unwrap();
                if !run.status.success() {
                    failures.push(format!(
                        "{at} --dry-run\n    {}",
                        String::from_utf8_lossy(&run.stderr).trim()
                    ));
                }
            }
        }
    }
    assert!(checked > 30, "only {checked} commands found");
    assert!(
        failures.is_empty(),
        "{} of {checked} documented commands fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn shell_words_and_placeholders() {
    assert_eq!(split("a 'b c' \"d\" ''"), ["a", "b c", "d", ""]);
    assert!(placeholder("DIR") && placeholder("RUN_DIR") && placeholder("PREDICTIONS.csv"));
    assert!(placeholder("path/to/cohort") && placeholder("my-spec.toml"));
    assert!(!placeholder("erm") && !placeholder("--out") && !placeholder("libtorch-cuda:0"));
    let text = "```sh\nmultifair train --dataset fairvision \\\n  --data-dir DIR  # note\n```\nmultifair no\n";
    assert_eq!(
        commands(text),
        [(2, split("train --dataset fairvision --data-dir DIR"))]
    );
}
