//! `iam-rotate man`: the man page in roff, generated from the same clap
//! definition the binary parses with, so it never disagrees with `--help`;
//! exit status, environment and files are added as the sections man
//! readers look for.

use std::io::Write;
use std::path::Path;

use anyhow::Context as _;
use clap::CommandFactory;

use super::Status;
use crate::cli::{Cli, ManArgs};
use crate::output;

const EXIT_STATUS: &[(&str, &str)] = &[
    ("0", "done, or waiting normally (nothing is due yet)"),
    (
        "1",
        "an error: bad input, an AWS error, a failed delivery, credentials of another \
         account than the plan's, a refused rollback",
    ),
    (
        "2",
        "usage: an unknown flag, a bad argument or duration, IAM_ROTATE_NOW set for a \
         command that could write to real AWS",
    ),
    (
        "3",
        "one or more plans are blocked; a person must act, then run --retry-blocked",
    ),
];

const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "IAM_ROTATE_PLANS_DIR",
        "the plans folder, as --plans-dir (default ./plans)",
    ),
    (
        "IAM_ROTATE_NOW",
        "an RFC 3339 time that replaces the clock, to rehearse a rotation; honoured for \
         reads, and for writes only against an emulator endpoint",
    ),
    (
        "IAM_ROTATE_LOG",
        "a tracing filter for stderr, for example iam_rotate=debug",
    ),
    ("IAM_ROTATE_ROLE_ARN", "the role to assume, as --role-arn"),
    ("AWS_PROFILE", "the AWS profile, as --profile"),
    (
        "AWS_REGION",
        "the region requests are signed for, as --region",
    ),
    (
        "AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_IAM",
        "send AWS calls elsewhere, as --endpoint-url",
    ),
    (
        "AWS_SHARED_CREDENTIALS_FILE",
        "the shared credentials file (default ~/.aws/credentials), read for credentials and \
         edited by --deliver profile:NAME and self-rotate",
    ),
    (
        "AWS_MAX_ATTEMPTS, AWS_RETRY_MODE",
        "as --max-attempts and --retry-mode",
    ),
];

const FILES: &[(&str, &str)] = &[
    (
        "<plans-dir>/<account>/<user>.yaml",
        "one plan per user; its JSON Schema is printed by iam-rotate schema",
    ),
    (
        "<plans-dir>/<account>/.<user>.yaml.lock",
        "the plan's lock file, held while a process works on the plan",
    ),
    (
        "~/.iam-rotate/credentials/<account>/<user>.csv",
        "where a new secret goes when the plan names no other destination",
    ),
    (
        "~/.aws/credentials",
        "the shared credentials file (AWS_SHARED_CREDENTIALS_FILE)",
    ),
];

pub fn execute(args: ManArgs) -> anyhow::Result<Status> {
    match args.out_dir {
        None => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            render_main(&mut out)?;
            out.flush()?;
        }
        Some(dir) => {
            let written = write_pages(&dir).with_context(|| {
                format!(
                    "cannot write the man pages into {}; check that the folder can be \
                     created and written, or print the main page with `iam-rotate man`",
                    dir.display()
                )
            })?;
            output::note(format!(
                "wrote {written} man pages into {} (iam-rotate.1 and one per subcommand); \
                 if that folder is not under your MANPATH, read them with \
                 `man -l {}/iam-rotate.1`",
                dir.display(),
                dir.display()
            ));
        }
    }
    Ok(Status::Success)
}

/// The command tree as the man pages show it: built, so that subcommands
/// know their full names (`iam-rotate-plan`), and without clap's `help`.
fn command() -> clap::Command {
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    command
}

/// The two lines roff's writer puts before every piece it renders (they
/// define the `\*(Aq` apostrophe); the page needs them once.
const APOSTROPHE_PREAMBLE: [&str; 2] = [".ie \\n(.g .ds Aq \\(aq", ".el .ds Aq '"];

/// The main page: `.TH` first, clap's sections, then ours in place of
/// clap's untitled `EXTRA` (the `--help` epilogue).
fn render_main(out: &mut dyn Write) -> std::io::Result<()> {
    let mut page = Vec::new();
    render_sections(&mut page)?;
    let page = String::from_utf8_lossy(&page);
    let mut lines: Vec<&str> = page
        .lines()
        .filter(|line| !APOSTROPHE_PREAMBLE.contains(line))
        .collect();
    if let Some(title) = lines.iter().position(|line| line.starts_with(".TH ")) {
        let title = lines.remove(title);
        writeln!(out, "{title}")?;
    }
    for line in APOSTROPHE_PREAMBLE.iter().chain(&lines) {
        writeln!(out, "{line}")?;
    }
    Ok(())
}

fn render_sections(out: &mut dyn Write) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(command());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    man.render_subcommands_section(out)?;
    section(out, "EXIT STATUS", EXIT_STATUS)?;
    section(out, "ENVIRONMENT", ENVIRONMENT)?;
    section(out, "FILES", FILES)?;
    writeln!(out, ".SH \"SEE ALSO\"")?;
    writeln!(
        out,
        "{}",
        escape(
            "plans/README.md (the plan format), docs/delivery.md (secret destinations), \
             docs/requests.md (the AWS calls each command makes), docs/policies/ (the IAM \
             policies each use needs)"
        )
    )?;
    man.render_version_section(out)
}

/// A titled list of terms and their meaning.
fn section(out: &mut dyn Write, title: &str, items: &[(&str, &str)]) -> std::io::Result<()> {
    writeln!(out, ".SH \"{title}\"")?;
    for (term, meaning) in items {
        writeln!(out, ".TP\n\\fB{}\\fR\n{}", escape(term), escape(meaning))?;
    }
    Ok(())
}

/// Text as roff shows it literally: backslashes and hyphens escaped, and
/// nothing at the start of a line that roff would take as a request.
fn escape(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with(['.', '\'']) {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

/// Writes iam-rotate.1 and iam-rotate-<subcommand>.1 into `dir`; how many.
fn write_pages(dir: &Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let command = command();
    let mut main = std::fs::File::create(dir.join("iam-rotate.1"))?;
    render_main(&mut main)?;
    main.flush()?;
    let mut written = 1;
    for sub in command.get_subcommands() {
        clap_mangen::Man::new(sub.clone()).generate_to(dir)?;
        written += 1;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_help_epilogue_and_the_man_page_name_the_same_variables() {
        let help = Cli::command()
            .get_after_long_help()
            .map(|h| h.to_string())
            .unwrap_or_default();
        for (names, _) in ENVIRONMENT {
            for name in names.split(", ") {
                assert!(help.contains(name), "{name} is missing from --help");
            }
        }
    }

    #[test]
    fn roff_escapes() {
        assert_eq!(escape("--plans-dir"), "\\-\\-plans\\-dir");
        assert_eq!(escape(".yaml"), "\\&.yaml");
        assert_eq!(escape("a\\b"), "a\\eb");
    }
}
