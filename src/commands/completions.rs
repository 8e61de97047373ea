//! `iam-rotate completions SHELL`: a shell completion script on stdout,
//! generated from the same clap definition the binary parses with.

use std::io::Write;

use clap::CommandFactory;
use clap_complete::Shell;

use super::Status;
use crate::cli::{Cli, CompletionsArgs};

pub fn execute(args: CompletionsArgs) -> anyhow::Result<Status> {
    let mut command = Cli::command();
    let name = command.get_name().to_string();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, &name, &mut script);
    if args.shell == Shell::Bash {
        script = fix_bash_states(&String::from_utf8_lossy(&script), &name).into_bytes();
    }
    let mut out = std::io::stdout().lock();
    out.write_all(&script)?;
    out.flush()?;
    Ok(Status::Success)
}

/// clap_complete's bash script names the state for `iam-rotate run` two
/// ways when the binary's name holds a hyphen: the loop over the words
/// typed sets `iam__rotate__subcmd__run`, the `case` that lists the flags
/// matches `iam__subcmd__rotate__subcmd__run`, so no subcommand's flags
/// ever complete (clap-rs/clap#6421, open). Spelling the labels as the loop
/// does fixes it; once clap_complete is fixed this changes nothing.
fn fix_bash_states(script: &str, name: &str) -> String {
    let label_form = name.replace('-', "__subcmd__");
    let loop_form = name.replace('-', "__");
    if label_form == loop_form {
        return script.to_string();
    }
    script.replace(&label_form, &loop_form)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bash_states_are_spelled_one_way() {
        let mut command = Cli::command();
        let mut script = Vec::new();
        clap_complete::generate(Shell::Bash, &mut command, "iam-rotate", &mut script);
        let fixed = fix_bash_states(&String::from_utf8_lossy(&script), "iam-rotate");
        // What the loop sets for `iam-rotate self-rotate` is a case label.
        assert!(fixed.contains("cmd=\"iam__rotate__subcmd__self__subcmd__rotate\""));
        assert!(fixed.contains("\n        iam__rotate__subcmd__self__subcmd__rotate)\n"));
        assert!(!fixed.contains("iam__subcmd__rotate"));
    }
}
