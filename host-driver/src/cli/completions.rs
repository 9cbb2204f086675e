//! `file-restore completions`: shell completion scripts generated from the
//! clap definition in [`crate::cli`], so they never drift from the options.

use super::{self as cli, CompletionShell};
use std::io::Write;

/// Writes the completion script for `shell`. clap_complete panics when its
/// writer fails (e.g. `| head -1` closed the pipe), so the script is made in
/// memory first and written here, where a failure is an error to report.
pub fn write(shell: CompletionShell, out: &mut dyn Write) -> std::io::Result<()> {
    let shell = match shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
        CompletionShell::Fish => clap_complete::Shell::Fish,
    };
    let mut cmd = cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "file-restore", &mut script);
    out.write_all(&script)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    const SUBCOMMANDS: [&str; 5] = ["list", "extract", "status", "stop", "completions"];

    fn script(shell: CompletionShell) -> String {
        let mut out = Vec::new();
        write(shell, &mut out).expect("writing to a Vec does not fail");
        String::from_utf8(out).expect("completion scripts are UTF-8")
    }

    #[test]
    fn bash_completion_names_the_subcommands_and_parses() {
        let s = script(CompletionShell::Bash);
        for sub in SUBCOMMANDS {
            assert!(s.contains(sub), "bash completion lacks {sub}");
        }
        assert!(
            !s.contains("man-pages"),
            "the hidden subcommand is completed"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file-restore.bash");
        std::fs::write(&file, &s).unwrap();
        let out = std::process::Command::new("bash")
            .arg("-n")
            .arg(&file)
            .output()
            .expect("bash runs");
        assert!(
            out.status.success(),
            "bash -n refuses the script: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn zsh_and_fish_completions_are_not_empty() {
        for shell in [CompletionShell::Zsh, CompletionShell::Fish] {
            let s = script(shell);
            // zsh writes `--output-format`, fish `-l output-format`.
            assert!(s.contains("extract") && s.contains("output-format"), "{s}");
        }
    }

    #[test]
    fn an_unknown_shell_is_a_usage_error_naming_the_choices() {
        let e = cli::Cli::try_parse_from(["file-restore", "completions", "tcsh"])
            .err()
            .expect("tcsh is refused");
        assert_eq!(e.kind(), clap::error::ErrorKind::InvalidValue);
        let msg = e.to_string();
        assert!(
            msg.contains("tcsh")
                && msg.contains("bash")
                && msg.contains("zsh")
                && msg.contains("fish"),
            "{msg}"
        );
    }
}
