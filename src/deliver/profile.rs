//! `profile:NAME`: the new key written into one profile of the shared
//! credentials file (`AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`).
//!
//! The file is edited as text, never parsed and written out again: in the
//! named profile the `aws_access_key_id` and `aws_secret_access_key` values
//! are replaced (or added right after the `[NAME]` header, or the whole
//! `[NAME]` section is appended at the end), and a stale `aws_session_token`
//! (or its legacy spelling `aws_security_token`) is removed. Every other byte
//! stays as it was: other profiles, comments (`#` and `;`), blank lines, key
//! order, spacing around `=`, `\r\n` line endings, a missing final newline,
//! and the file's permission bits. A file whose mode lets its group or
//! others read it is refused, never written: a new secret must not join
//! keys that others can read.
//!
//! Why the session token goes: a session token only belongs with the
//! temporary key it was issued for. Left next to a long-term key, every SDK
//! and the CLI send it along, and AWS rejects each request
//! (`InvalidClientTokenId`), so the profile would stop working.
//!
//! Lines are read the way the AWS SDKs read them (the shared profile-file
//! rules): a header starts with `[` in the first column, a line starting
//! with whitespace continues the property above it, a comment starts with
//! `#` or `;`, and a `#`/`;` after whitespace ends a value. In the
//! credentials file a profile is named without a `profile ` prefix, so
//! `[profile ci]` is not the profile `ci` (the SDKs ignore such a section).

use std::fs;
use std::io;
use std::ops::Range;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use thiserror::Error;
use zeroize::Zeroizing;

use super::{DeliverError, Destination};
use crate::atomic;
use crate::iam::CreatedKey;

/// The key of the access key id, as the SDKs spell it.
pub const KEY_ID: &str = "aws_access_key_id";
/// The key of the secret access key.
pub const SECRET: &str = "aws_secret_access_key";
/// Session tokens, current and legacy spelling: removed from a rotated profile.
const SESSION_TOKENS: [&str; 2] = ["aws_session_token", "aws_security_token"];

/// What counts as whitespace in a profile file (the SDKs' definition).
const WS: &[char] = &[' ', '\t'];
const COMMENT: &[char] = &['#', ';'];

/// A problem with the credentials file's text. It names a line, never shows
/// its content: the line may hold a secret.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

fn error(line: usize, message: impl Into<String>) -> ParseError {
    ParseError {
        line,
        message: message.into(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Blank,
    Comment,
    Header {
        name: String,
    },
    /// `key = value`; `value` is the span of the value inside the line,
    /// without surrounding whitespace and without a trailing comment.
    Property {
        key: String,
        value: Range<usize>,
    },
    /// An indented line that belongs to the property above it.
    Continuation,
}

/// One line of the file, split from its line ending so both can be kept.
#[derive(Debug)]
struct Line<'a> {
    content: &'a str,
    /// `"\n"`, `"\r\n"`, or `""` for a last line without a newline.
    ending: &'a str,
    kind: Kind,
}

/// A profile section: its header line and the lines up to the next header.
#[derive(Debug)]
struct Section {
    name: String,
    header: usize,
    end: usize,
}

#[derive(Debug)]
struct Parsed<'a> {
    lines: Vec<Line<'a>>,
    sections: Vec<Section>,
}

fn split_lines(text: &str) -> Vec<(&str, &str)> {
    text.split_inclusive('\n')
        .map(|piece| {
            if let Some(content) = piece.strip_suffix("\r\n") {
                (content, "\r\n")
            } else if let Some(content) = piece.strip_suffix('\n') {
                (content, "\n")
            } else {
                (piece, "")
            }
        })
        .collect()
}

/// The span of a property's value within `content` (which holds a `=`).
fn value_span(content: &str, eq: usize) -> Range<usize> {
    let after = &content[eq + 1..];
    let start = eq + 1 + (after.len() - after.trim_start_matches(WS).len());
    let rest = &content[start..];
    let mut end = rest.len();
    let mut previous_whitespace = false;
    for (index, c) in rest.char_indices() {
        if COMMENT.contains(&c) && previous_whitespace {
            end = index;
            break;
        }
        previous_whitespace = WS.contains(&c);
    }
    let value = rest[..end].trim_end_matches(WS);
    start..start + value.len()
}

fn parse(text: &str) -> Result<Parsed<'_>, ParseError> {
    let mut lines = Vec::new();
    let mut sections: Vec<Section> = Vec::new();
    // Whether an indented line may continue a property here.
    let mut in_property = false;
    for (index, (content, ending)) in split_lines(text).into_iter().enumerate() {
        let number = index + 1;
        let visible = if index == 0 {
            content.trim_start_matches('\u{feff}')
        } else {
            content
        };
        let trimmed = visible.trim_matches(WS);
        let kind = if trimmed.is_empty() {
            Kind::Blank
        } else if trimmed.starts_with(COMMENT) {
            Kind::Comment
        } else if visible.starts_with('[') {
            let cut = visible.find(COMMENT).unwrap_or(visible.len());
            let header = visible[..cut].trim_matches(WS);
            let Some(inner) = header.strip_prefix('[').and_then(|h| h.strip_suffix(']')) else {
                return Err(error(
                    number,
                    "a profile header must look like [name], with nothing after the ] but a comment",
                ));
            };
            let name = inner.trim_matches(WS);
            if name.is_empty() {
                return Err(error(number, "a profile header with no name: []"));
            }
            if let Some(last) = sections.last_mut() {
                last.end = index;
            }
            sections.push(Section {
                name: name.to_string(),
                header: index,
                end: index + 1,
            });
            in_property = false;
            Kind::Header {
                name: name.to_string(),
            }
        } else if visible.starts_with(WS) {
            if !in_property {
                return Err(error(
                    number,
                    "an indented line must continue a `key = value` line above it; remove the \
                     indentation or the line",
                ));
            }
            Kind::Continuation
        } else {
            if sections.is_empty() {
                return Err(error(
                    number,
                    "a `key = value` line before any [profile] header",
                ));
            }
            let Some(eq) = visible.find('=') else {
                return Err(error(
                    number,
                    "expected `key = value`, a [profile] header, a comment or a blank line",
                ));
            };
            let key = visible[..eq].trim_matches(WS);
            if key.is_empty() {
                return Err(error(number, "a `= value` line without a key"));
            }
            in_property = true;
            let offset = content.len() - visible.len();
            let span = value_span(visible, eq);
            Kind::Property {
                key: key.to_ascii_lowercase(),
                value: span.start + offset..span.end + offset,
            }
        };
        lines.push(Line {
            content,
            ending,
            kind,
        });
    }
    if let Some(last) = sections.last_mut() {
        last.end = lines.len();
    }
    Ok(Parsed { lines, sections })
}

impl Parsed<'_> {
    /// The one section named `profile`, if any; two are refused, since tools
    /// disagree on which one counts.
    fn section(&self, profile: &str) -> Result<Option<&Section>, ParseError> {
        let found: Vec<&Section> = self.sections.iter().filter(|s| s.name == profile).collect();
        match found.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one)),
            [first, rest @ ..] => Err(error(
                first.header + 1,
                format!(
                    "the profile [{profile}] appears {} times (lines {}); the SDKs merge them but \
                     the AWS CLI refuses the file. Merge them into one by hand",
                    rest.len() + 1,
                    found
                        .iter()
                        .map(|s| (s.header + 1).to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    }

    /// The line of `key` inside `section`, refusing a key given twice.
    fn property(&self, section: &Section, key: &str) -> Result<Option<usize>, ParseError> {
        let mut found = None;
        for index in section.header + 1..section.end {
            if let Kind::Property { key: k, .. } = &self.lines[index].kind {
                if k == key {
                    if let Some(first) = found {
                        return Err(error(
                            index + 1,
                            format!(
                                "`{key}` is set twice in [{}] (lines {} and {}); keep one",
                                section.name,
                                first + 1,
                                index + 1
                            ),
                        ));
                    }
                    found = Some(index);
                }
            }
        }
        Ok(found)
    }

    /// The property line at `index` and the continuation lines under it.
    fn property_lines(&self, index: usize) -> Range<usize> {
        let mut end = index + 1;
        while end < self.lines.len()
            && matches!(
                self.lines[end].kind,
                Kind::Continuation | Kind::Blank | Kind::Comment
            )
        {
            end += 1;
        }
        // Blank lines and comments after the last continuation belong to no
        // property.
        while end > index + 1 && matches!(self.lines[end - 1].kind, Kind::Blank | Kind::Comment) {
            end -= 1;
        }
        index..end
    }

    fn value(&self, index: usize) -> &str {
        match &self.lines[index].kind {
            Kind::Property { value, .. } => &self.lines[index].content[value.clone()],
            _ => "",
        }
    }

    /// The line ending new lines get: the file's own, `\n` for a new file.
    fn ending(&self) -> &'static str {
        match self.lines.iter().map(|l| l.ending).find(|e| !e.is_empty()) {
            Some("\r\n") => "\r\n",
            _ => "\n",
        }
    }
}

/// Checks that `text` can be edited for `profile` (it parses, the profile
/// and its key lines are not given twice).
pub fn validate(text: &str, profile: &str) -> Result<(), ParseError> {
    let parsed = parse(text)?;
    if let Some(section) = parsed.section(profile)? {
        for key in [KEY_ID, SECRET].into_iter().chain(SESSION_TOKENS) {
            parsed.property(section, key)?;
        }
    }
    Ok(())
}

/// The file's text with `profile` holding `key_id` and `secret`, and
/// nothing else changed (see the module documentation).
pub fn set_key(
    text: &str,
    profile: &str,
    key_id: &str,
    secret: &str,
) -> Result<Zeroizing<String>, ParseError> {
    let parsed = parse(text)?;
    let ending = parsed.ending();
    let mut out = Zeroizing::new(String::with_capacity(
        text.len() + profile.len() + key_id.len() + secret.len() + 128,
    ));
    let push_property = |out: &mut String, key: &str, value: &str| {
        out.push_str(key);
        out.push_str(" = ");
        out.push_str(value);
        out.push_str(ending);
    };

    let Some(section) = parsed.section(profile)? else {
        out.push_str(text);
        if let Some(last) = parsed.lines.last() {
            if last.ending.is_empty() {
                out.push_str(ending);
            }
            if last.kind != Kind::Blank {
                out.push_str(ending);
            }
        }
        out.push('[');
        out.push_str(profile);
        out.push(']');
        out.push_str(ending);
        push_property(&mut out, KEY_ID, key_id);
        push_property(&mut out, SECRET, secret);
        return Ok(out);
    };

    let id_line = parsed.property(section, KEY_ID)?;
    let secret_line = parsed.property(section, SECRET)?;
    let mut dropped = vec![false; parsed.lines.len()];
    for key in SESSION_TOKENS {
        if let Some(index) = parsed.property(section, key)? {
            dropped[parsed.property_lines(index)].fill(true);
        }
    }
    // A replaced value is one line: whatever continued it goes.
    for index in [id_line, secret_line].into_iter().flatten() {
        let lines = parsed.property_lines(index);
        dropped[lines.start + 1..lines.end].fill(true);
    }

    for (index, line) in parsed.lines.iter().enumerate() {
        if dropped[index] {
            continue;
        }
        // Lines added right after this one.
        let mut after: Vec<(&str, &str)> = Vec::new();
        if Some(index) == secret_line && id_line.is_none() {
            // The id goes just before the secret it pairs with.
            push_property(&mut out, KEY_ID, key_id);
        }
        if Some(index) == id_line {
            replace_value(&mut out, &parsed, index, key_id);
            if secret_line.is_none() {
                after.push((SECRET, secret));
            }
        } else if Some(index) == secret_line {
            replace_value(&mut out, &parsed, index, secret);
        } else {
            out.push_str(line.content);
            if index == section.header && id_line.is_none() && secret_line.is_none() {
                after.push((KEY_ID, key_id));
                after.push((SECRET, secret));
            }
        }
        if after.is_empty() || !line.ending.is_empty() {
            out.push_str(line.ending);
        } else {
            out.push_str(ending);
        }
        for (key, value) in after {
            push_property(&mut out, key, value);
        }
    }
    Ok(out)
}

/// Writes line `index` with its value replaced, keeping the key, the
/// spacing around `=` and a trailing comment as they were.
fn replace_value(out: &mut String, parsed: &Parsed<'_>, index: usize, value: &str) {
    let line = &parsed.lines[index];
    let Kind::Property { value: span, .. } = &line.kind else {
        return;
    };
    let before = &line.content[..span.start];
    out.push_str(before);
    // `key =` with the value on continuation lines: give it one space.
    if span.is_empty() && before.ends_with('=') && before[..before.len() - 1].ends_with(WS) {
        out.push(' ');
    }
    out.push_str(value);
    out.push_str(&line.content[span.end..]);
}

/// The access key a profile holds, as the SDKs would read it.
pub struct ProfileKey {
    pub key_id: Option<String>,
    pub secret: Option<SecretString>,
    pub has_session_token: bool,
}

/// Reads `profile` from the file's text; `None` when there is no such
/// profile.
pub fn read_key(text: &str, profile: &str) -> Result<Option<ProfileKey>, ParseError> {
    let parsed = parse(text)?;
    let Some(section) = parsed.section(profile)? else {
        return Ok(None);
    };
    let value = |key: &str| -> Result<Option<&str>, ParseError> {
        Ok(parsed
            .property(section, key)?
            .map(|index| parsed.value(index))
            .filter(|v| !v.is_empty()))
    };
    let mut has_session_token = false;
    for key in SESSION_TOKENS {
        has_session_token |= value(key)?.is_some();
    }
    Ok(Some(ProfileKey {
        key_id: value(KEY_ID)?.map(str::to_string),
        secret: value(SECRET)?.map(|s| SecretString::from(s.to_string())),
        has_session_token,
    }))
}

/// The shared credentials file: `AWS_SHARED_CREDENTIALS_FILE`, else
/// `~/.aws/credentials`, as every AWS tool finds it.
pub fn credentials_path() -> Result<PathBuf, String> {
    let home = || {
        std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .ok_or_else(|| {
                "HOME is not set, so ~/.aws/credentials cannot be found; set \
             AWS_SHARED_CREDENTIALS_FILE to the credentials file"
                    .to_string()
            })
    };
    match std::env::var_os("AWS_SHARED_CREDENTIALS_FILE").filter(|v| !v.is_empty()) {
        Some(path) => {
            let path = PathBuf::from(path);
            match path.strip_prefix("~") {
                Ok(rest) => Ok(PathBuf::from(home()?).join(rest)),
                Err(_) => Ok(path),
            }
        }
        None => Ok(PathBuf::from(home()?).join(".aws").join("credentials")),
    }
}

/// Reads the credentials file, `None` when it does not exist.
pub fn read_file(path: &Path) -> io::Result<Option<Zeroizing<String>>> {
    match fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(|s| Some(Zeroizing::new(s)))
            .map_err(|e| {
                let mut bytes = e.into_bytes();
                zeroize::Zeroize::zeroize(&mut bytes);
                io::Error::new(io::ErrorKind::InvalidData, "the file is not UTF-8 text")
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Where the file really is: a symlinked credentials file (a dotfiles
/// repository, say) is written through the link, which stays a link.
fn real_path(path: &Path) -> Result<PathBuf, String> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => fs::canonicalize(path).map_err(|e| {
            format!(
                "{} is a symbolic link that cannot be followed ({e}); fix or remove the link",
                path.display()
            )
        }),
        _ => Ok(path.to_path_buf()),
    }
}

/// A credentials file must be readable by its owner only: one whose mode
/// lets its group or others read it (any of the bits 0o077) is refused,
/// whatever other keys it holds, and is never written.
fn private(path: &Path, mode: u32) -> Result<(), String> {
    if mode & 0o077 == 0 {
        return Ok(());
    }
    Err(format!(
        "the credentials file {} has mode {:o}: its group or others can read the keys in it, \
         and a new secret must not join them; make it private with `chmod 600 {}`",
        path.display(),
        mode & 0o777,
        path.display()
    ))
}

pub(super) fn check(
    destination: &Destination,
    path: &Path,
    profile: &str,
) -> Result<(), DeliverError> {
    let fail = |message: String| DeliverError::failed(destination, message);
    let path = real_path(path).map_err(fail)?;
    match fs::metadata(&path) {
        Ok(meta) if !meta.is_file() => {
            return Err(fail(format!(
            "{} is not a regular file; point AWS_SHARED_CREDENTIALS_FILE at the credentials file",
            path.display()
        )))
        }
        Ok(meta) => private(&path, meta.permissions().mode()).map_err(fail)?,
        _ => {}
    }
    let text = read_file(&path)
        .map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?
        .unwrap_or_default();
    validate(&text, profile).map_err(|e| {
        fail(format!(
            "{}, {e}. Fix the file (nothing was changed) and run again",
            path.display()
        ))
    })?;
    super::prove_writable(destination, super::file::parent(&path)).map(drop)
}

pub(super) fn deliver(
    destination: &Destination,
    path: &Path,
    profile: &str,
    key: &CreatedKey,
) -> Result<(), DeliverError> {
    let fail = |message: String| DeliverError::failed(destination, message);
    let path = real_path(path).map_err(fail)?;
    let existing =
        read_file(&path).map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?;
    // Checked again here, not only by `check`: the mode found is the one
    // the rewritten file gets.
    let mode = match fs::metadata(&path) {
        Ok(meta) => meta.permissions().mode() & 0o7777,
        Err(_) => 0o600,
    };
    private(&path, mode).map_err(fail)?;
    let original: &str = existing.as_deref().map(String::as_str).unwrap_or("");
    let had_session_token = read_key(original, profile)
        .ok()
        .flatten()
        .is_some_and(|k| k.has_session_token);
    let updated = set_key(original, profile, &key.id, key.secret.expose_secret()).map_err(|e| {
        fail(format!(
            "{}, {e}. Fix the file and run again",
            path.display()
        ))
    })?;
    atomic::write(&path, updated.as_bytes(), mode)
        .map_err(|e| fail(format!("writing {} failed: {e}", path.display())))?;
    drop(updated);

    let confirmed = read_file(&path)
        .ok()
        .flatten()
        .and_then(|text| read_key(&text, profile).ok().flatten())
        .is_some_and(|read| {
            read.key_id.as_deref() == Some(key.id.as_str())
                && read
                    .secret
                    .is_some_and(|s| s.expose_secret() == key.secret.expose_secret())
                && !read.has_session_token
        });
    if confirmed {
        if had_session_token {
            tracing::warn!(
                "removed aws_session_token from [{profile}] in {}: it belonged to a temporary key, \
                 and sent along with the new long-term key it would make every request fail",
                path.display()
            );
        }
        return Ok(());
    }
    // Put the file back as it was: a profile naming a key that is about to
    // be deleted would only break whatever uses it.
    let restored = match &existing {
        Some(text) => atomic::write(&path, text.as_bytes(), mode),
        None => fs::remove_file(&path),
    };
    Err(fail(match restored {
        Ok(()) => format!(
            "reading {} back did not find the new key in [{profile}], so the file was put back \
             as it was. Something else is writing it at the same time; run again",
            path.display()
        ),
        Err(e) => format!(
            "reading {} back did not find the new key in [{profile}], and putting the file back \
             failed too ({e}); check [{profile}] in it by hand",
            path.display()
        ),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    const ID: &str = "AKIANEWKEY0000000001";
    /// Secret-shaped (40 characters) but plainly a stand-in.
    const SECRET_VALUE: &str = "not-a-real-secret/0000000000000000000000";

    fn edit(text: &str, profile: &str) -> String {
        set_key(text, profile, ID, SECRET_VALUE)
            .unwrap()
            .as_str()
            .to_string()
    }

    /// The lines of `after` that differ from `before`, which must have the
    /// same number of lines.
    fn changed_lines<'a>(before: &str, after: &'a str) -> Vec<&'a str> {
        let b: Vec<&str> = before.split_inclusive('\n').collect();
        let a: Vec<&str> = after.split_inclusive('\n').collect();
        assert_eq!(a.len(), b.len(), "{after}");
        a.iter()
            .zip(&b)
            .filter(|(a, b)| a != b)
            .map(|(a, _)| *a)
            .collect()
    }

    #[test]
    fn only_the_two_key_lines_of_the_profile_change() {
        let before = "\
# managed by hand; do not reorder
[default]
aws_access_key_id = AKIADEFAULT000000000
aws_secret_access_key = defaultSecret
region = us-east-1

; the CI user
[ci]
region=eu-west-1
aws_access_key_id=AKIAOLDKEY0000000000
output = json
aws_secret_access_key=oldSecret
# trailing comment of ci

[other]
aws_access_key_id = AKIAOTHER00000000000
aws_secret_access_key = otherSecret
";
        let after = edit(before, "ci");
        assert_eq!(
            changed_lines(before, &after),
            vec![
                "aws_access_key_id=AKIANEWKEY0000000001\n",
                &format!("aws_secret_access_key={SECRET_VALUE}\n"),
            ]
        );
        let key = read_key(&after, "ci").unwrap().unwrap();
        assert_eq!(key.key_id.as_deref(), Some(ID));
        assert_eq!(key.secret.unwrap().expose_secret(), SECRET_VALUE);
        let other = read_key(&after, "default").unwrap().unwrap();
        assert_eq!(other.key_id.as_deref(), Some("AKIADEFAULT000000000"));
    }

    #[test]
    fn spacing_around_the_equals_sign_and_trailing_comments_stay() {
        let before = "[ci]\naws_access_key_id   =\tAKIAOLD # the old one\n\
                      aws_secret_access_key= old\n";
        let after = edit(before, "ci");
        assert_eq!(
            after,
            format!(
                "[ci]\naws_access_key_id   =\t{ID} # the old one\naws_secret_access_key= \
                 {SECRET_VALUE}\n"
            )
        );
    }

    #[test]
    fn crlf_endings_are_kept_and_used_for_new_lines() {
        let before = "[a]\r\nregion = x\r\n\r\n[ci]\r\nregion = y\r\n";
        let after = edit(before, "ci");
        assert_eq!(
            after,
            format!(
                "[a]\r\nregion = x\r\n\r\n[ci]\r\naws_access_key_id = {ID}\r\n\
                 aws_secret_access_key = {SECRET_VALUE}\r\nregion = y\r\n"
            )
        );
        let appended = edit(before, "new");
        assert!(appended.starts_with(before));
        assert_eq!(
            &appended[before.len()..],
            format!(
                "\r\n[new]\r\naws_access_key_id = {ID}\r\naws_secret_access_key = \
                 {SECRET_VALUE}\r\n"
            )
        );
    }

    #[test]
    fn a_file_without_a_final_newline_stays_without_one() {
        let before = "[ci]\naws_access_key_id = AKIAOLD\naws_secret_access_key = old";
        assert_eq!(
            edit(before, "ci"),
            format!("[ci]\naws_access_key_id = {ID}\naws_secret_access_key = {SECRET_VALUE}")
        );
        // Appending a profile needs the newline.
        let appended = edit(before, "new");
        assert_eq!(
            appended,
            format!(
                "{before}\n\n[new]\naws_access_key_id = {ID}\naws_secret_access_key = \
                 {SECRET_VALUE}\n"
            )
        );
        // A header on the last line gets its keys after it.
        assert_eq!(
            edit("[ci]", "ci"),
            format!("[ci]\naws_access_key_id = {ID}\naws_secret_access_key = {SECRET_VALUE}\n")
        );
    }

    #[test]
    fn a_missing_profile_is_appended_and_a_missing_file_is_created() {
        assert_eq!(
            edit("", "ci"),
            format!("[ci]\naws_access_key_id = {ID}\naws_secret_access_key = {SECRET_VALUE}\n")
        );
        let before = "[default]\naws_access_key_id = A\naws_secret_access_key = B\n\n";
        let after = edit(before, "ci");
        assert_eq!(
            after,
            format!(
                "{before}[ci]\naws_access_key_id = {ID}\naws_secret_access_key = {SECRET_VALUE}\n"
            )
        );
    }

    #[test]
    fn a_missing_key_line_is_added_beside_the_other() {
        let only_id = "[ci]\nregion = x\naws_access_key_id = AKIAOLD\noutput = json\n";
        assert_eq!(
            edit(only_id, "ci"),
            format!(
                "[ci]\nregion = x\naws_access_key_id = {ID}\naws_secret_access_key = \
                 {SECRET_VALUE}\noutput = json\n"
            )
        );
        let only_secret = "[ci]\nregion = x\naws_secret_access_key = old\n";
        assert_eq!(
            edit(only_secret, "ci"),
            format!(
                "[ci]\nregion = x\naws_access_key_id = {ID}\naws_secret_access_key = \
                 {SECRET_VALUE}\n"
            )
        );
    }

    #[test]
    fn a_stale_session_token_is_removed_with_its_continuation_lines() {
        let before = "[ci]\naws_access_key_id = ASIATEMP\naws_secret_access_key = t\n\
                      aws_session_token = FwoGZXIvYXdzE\n  continued\nregion = x\n\
                      AWS_SECURITY_TOKEN = legacy\n[next]\naws_session_token = keep\n";
        let after = edit(before, "ci");
        assert_eq!(
            after,
            format!(
                "[ci]\naws_access_key_id = {ID}\naws_secret_access_key = {SECRET_VALUE}\n\
                 region = x\n[next]\naws_session_token = keep\n"
            )
        );
        assert!(!read_key(&after, "ci").unwrap().unwrap().has_session_token);
        assert!(read_key(&after, "next").unwrap().unwrap().has_session_token);
    }

    #[test]
    fn keys_are_matched_without_regard_to_case_and_profiles_exactly() {
        let before = "[CI]\nAWS_ACCESS_KEY_ID = upper\n[ci]\nAws_Access_Key_Id = AKIAOLD\n";
        let after = edit(before, "ci");
        assert_eq!(
            after,
            format!(
                "[CI]\nAWS_ACCESS_KEY_ID = upper\n[ci]\nAws_Access_Key_Id = {ID}\n\
                 aws_secret_access_key = {SECRET_VALUE}\n"
            )
        );
    }

    #[test]
    fn a_profile_prefix_is_not_the_profile_in_the_credentials_file() {
        let before = "[profile ci]\naws_access_key_id = AKIAOLD\n";
        let after = edit(before, "ci");
        assert!(after.starts_with(before), "{after}");
        assert!(after.ends_with(&format!(
            "\n[ci]\naws_access_key_id = {ID}\naws_secret_access_key = {SECRET_VALUE}\n"
        )));
    }

    #[test]
    fn headers_with_spaces_and_comments_are_recognised() {
        let before = "[ ci ] # the ci user\naws_access_key_id = A\naws_secret_access_key = B\n";
        let after = edit(before, "ci");
        assert_eq!(
            changed_lines(before, &after),
            vec![
                format!("aws_access_key_id = {ID}\n").as_str(),
                format!("aws_secret_access_key = {SECRET_VALUE}\n").as_str()
            ]
        );
    }

    #[test]
    fn comments_and_blank_lines_inside_the_profile_stay_in_place() {
        let before = "[ci]\n# key below\naws_access_key_id = A\n\n; secret below\n\
                      aws_secret_access_key = B\n\n\n[x]\n";
        let after = edit(before, "ci");
        assert_eq!(changed_lines(before, &after).len(), 2);
    }

    #[test]
    fn sub_properties_of_other_keys_stay() {
        let before = "[ci]\ns3 =\n  max_concurrent_requests = 20\naws_access_key_id = A\n\
                      aws_secret_access_key = B\n";
        let after = edit(before, "ci");
        assert_eq!(changed_lines(before, &after).len(), 2);
    }

    #[test]
    fn a_byte_order_mark_is_kept() {
        let before = "\u{feff}[ci]\naws_access_key_id = A\naws_secret_access_key = B\n";
        let after = edit(before, "ci");
        assert!(after.starts_with("\u{feff}[ci]\n"));
        assert_eq!(changed_lines(before, &after).len(), 2);
    }

    #[test]
    fn unparseable_files_are_refused_with_the_line_and_without_its_content() {
        let cases = [
            ("aws_access_key_id = A\n", 1, "before any [profile] header"),
            ("[ci]\nAKIASECRETLOOKINGLINE\n", 2, "expected `key = value`"),
            ("[ci\nx = y\n", 1, "[name]"),
            ("[ci]\n  indented = y\n", 2, "indented line"),
            ("# c\n[]\n", 2, "no name"),
            ("[ci]\n= y\n", 2, "without a key"),
        ];
        for (text, line, words) in cases {
            let err = set_key(text, "ci", ID, SECRET_VALUE).unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err}");
            assert!(err.to_string().contains(words), "{text:?}: {err}");
            assert!(!err.to_string().contains("AKIASECRET"), "{err}");
        }
    }

    #[test]
    fn duplicates_of_the_rotated_profile_or_its_keys_are_refused() {
        let twice = "[ci]\nregion = a\n[x]\n[ci]\nregion = b\n";
        let err = validate(twice, "ci").unwrap_err();
        assert_eq!(err.line, 1);
        assert!(err.to_string().contains("lines 1, 4"), "{err}");
        // Another profile given twice is not this tool's business.
        assert!(validate(twice, "x").is_ok());
        let key_twice = "[ci]\naws_access_key_id = A\naws_access_key_id = B\n";
        let err = validate(key_twice, "ci").unwrap_err();
        assert!(err.to_string().contains("lines 2 and 3"), "{err}");
    }

    #[test]
    fn reading_a_profile_takes_values_as_the_sdks_do() {
        let text = "[ci]\naws_access_key_id = AKIA1 # note\naws_secret_access_key=s;x\n";
        let key = read_key(text, "ci").unwrap().unwrap();
        assert_eq!(key.key_id.as_deref(), Some("AKIA1"));
        // A comment sign needs whitespace before it to start a comment.
        assert_eq!(key.secret.unwrap().expose_secret(), "s;x");
        assert!(read_key(text, "other").unwrap().is_none());
        let empty = read_key("[ci]\naws_access_key_id =\n", "ci")
            .unwrap()
            .unwrap();
        assert!(empty.key_id.is_none());
    }

    fn created() -> CreatedKey {
        CreatedKey {
            id: ID.into(),
            created_at: Utc::now(),
            secret: SecretString::from(SECRET_VALUE.to_string()),
        }
    }

    #[test]
    fn delivery_creates_a_private_file_in_a_private_folder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aws/credentials");
        let dest = Destination::Profile {
            name: "ci".into(),
            file: "/unused".into(),
        };
        check(&dest, &path, "ci").unwrap();
        deliver(&dest, &path, "ci", &created()).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let dir_mode = fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            format!("[ci]\naws_access_key_id = {ID}\naws_secret_access_key = {SECRET_VALUE}\n")
        );
    }

    #[test]
    fn delivery_keeps_the_mode_and_writes_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("dotfiles-credentials");
        fs::write(
            &real,
            "[ci]\naws_access_key_id = A\naws_secret_access_key = B\n",
        )
        .unwrap();
        fs::set_permissions(&real, fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.path().join("credentials");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let dest = Destination::Profile {
            name: "ci".into(),
            file: "/unused".into(),
        };
        check(&dest, &link, "ci").unwrap();
        deliver(&dest, &link, "ci", &created()).unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(
            fs::metadata(&real).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(fs::read_to_string(&real).unwrap().contains(ID));
    }

    #[test]
    fn check_refuses_a_credentials_file_others_can_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        let text = "[ci]\naws_access_key_id = A\naws_secret_access_key = B\n";
        fs::write(&path, text).unwrap();
        let dest = Destination::Profile {
            name: "ci".into(),
            file: "/unused".into(),
        };
        for mode in [0o644, 0o640, 0o604, 0o660, 0o610] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let err = check(&dest, &path, "ci").unwrap_err().to_string();
            assert!(
                err.contains(&format!("has mode {mode:o}")),
                "{mode:o}: {err}"
            );
            assert!(
                err.contains(&format!("`chmod 600 {}`", path.display())),
                "{err}"
            );
            assert_eq!(fs::read_to_string(&path).unwrap(), text);
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                mode
            );
        }
        for mode in [0o600, 0o400] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            check(&dest, &path, "ci").unwrap();
        }
    }

    #[test]
    fn delivery_refuses_a_credentials_file_others_can_read_and_leaves_it_alone() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("shared-credentials");
        let text = "[ci]\naws_access_key_id = A\naws_secret_access_key = B\n";
        fs::write(&real, text).unwrap();
        fs::set_permissions(&real, fs::Permissions::from_mode(0o644)).unwrap();
        // Also through a symbolic link: the mode that counts is the file's.
        let link = dir.path().join("credentials");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let dest = Destination::Profile {
            name: "ci".into(),
            file: "/unused".into(),
        };
        for path in [&real, &link] {
            let err = deliver(&dest, path, "ci", &created())
                .unwrap_err()
                .to_string();
            assert!(err.contains("chmod 600"), "{err}");
            assert!(!err.contains(SECRET_VALUE), "{err}");
            assert_eq!(fs::read_to_string(&real).unwrap(), text);
            assert_eq!(
                fs::metadata(&real).unwrap().permissions().mode() & 0o777,
                0o644
            );
        }
    }

    #[test]
    fn check_refuses_an_unparseable_file_and_leaves_it_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        let text = "[ci]\nnot a property\n";
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let dest = Destination::Profile {
            name: "ci".into(),
            file: "/unused".into(),
        };
        let err = check(&dest, &path, "ci").unwrap_err().to_string();
        assert!(err.contains("credentials, line 2: expected"), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), text);
    }
}
