//! Reading the patch mail b4 pipes in: its headers, its body's MIME decoding, and the patch
//! in it ([`parse_message`] → [`MailPatch`]).
//!
//! The mail formats are the crates' business: `mailparse` splits and unfolds the header block
//! and decodes RFC 2047 encoded words and the Content-Type parameters, `quoted_printable`
//! (mailparse's own decoder) and `base64` decode the body. What stays here is what is
//! particular to patch mail: git am's in-body headers, the subject's `[PATCH v2 3/5]` tags,
//! where the commit message ends and the diff begins, and the decision whether to decode the
//! body at all.
//!
//! That decision is needed because the message b4 pipes is made by
//! `LoreMessage.get_msg_as_bytes()`, which writes the headers as they were but the body
//! *already decoded*: a lore message sent as `Content-Transfer-Encoding: quoted-printable`
//! arrives with that header and a plain body. [`parse_message`] therefore decodes a
//! quoted-printable or base64 body only when it is validly encoded (7-bit, lines of at most
//! 76 characters, every `=` starting an escape or a soft line break; for base64, nothing but
//! the alphabet and padding); a patch body almost never is, as C code has `= ` in it.

use std::fmt::Write as _;

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use mailparse::MailHeaderMap as _;

#[derive(Debug, thiserror::Error)]
pub enum B4Error {
    #[error("read the patch mail: it has no headers (the first line is {first_line:?}); b4 pipes one RFC 2822 message per patch")]
    NoHeaders { first_line: String },
    #[error("read the patch mail: its header block is malformed; b4 pipes one RFC 2822 message per patch")]
    Headers {
        #[source]
        source: mailparse::MailParseError,
    },
    #[error("read the patch mail: it has no {name} header")]
    MissingHeader { name: &'static str },
    #[error("read the patch mail: {content_type} messages are not supported; send the patch inline (`git format-patch`, `b4 send`)")]
    Multipart { content_type: String },
    #[error("read the patch mail: its body is not valid {charset}")]
    Charset { charset: String },
    #[error("read the patch mail: unsupported charset {charset:?} (lab reads UTF-8, US-ASCII and ISO-8859-1)")]
    UnsupportedCharset { charset: String },
    #[error("read the patch mail: unsupported Content-Transfer-Encoding {encoding:?}")]
    UnsupportedEncoding { encoding: String },
}

/// One patch mail, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailPatch {
    /// The Subject header, unfolded and decoded (`[PATCH v2 3/5] futex: ...`).
    pub subject: String,
    /// The subject without its leading `[...]` groups (`futex: ...`): git's commit subject.
    pub clean_subject: String,
    /// The words of the `[...]` groups that are neither a version nor a position
    /// (`PATCH`, `RFC`, `net-next`).
    pub prefixes: Vec<String>,
    /// `v2` → 2; None when the subject has no version (a v1).
    pub version: Option<u32>,
    /// `3/5` → 3 and 5; a cover letter is 0.
    pub index: Option<u32>,
    pub total: Option<u32>,
    /// The author: an in-body `From:` line if the body starts with one (a patch sent on
    /// someone else's behalf), else the From header.
    pub from: String,
    /// Without the angle brackets.
    pub message_id: Option<String>,
    pub date: Option<String>,
    /// The commit message: the body up to the `---` line (or the diff), in-body headers
    /// removed, trailing blank lines trimmed.
    pub body: String,
    /// The diff, from the first `diff --git` (or `--- `/`+++ ` pair) to the end of its last
    /// hunk, exactly as sent (the `-- ` signature and anything after the diff excluded).
    /// Empty for a cover letter.
    pub diff: String,
    /// The patch as `git format-patch` would have written it: an mbox `From ` line, the
    /// headers git am reads, and the decoded body. Feed it to `git am` or lab's patch parser.
    pub raw_text: String,
}

/// Parses one patch mail as b4 pipes it (or as `git format-patch` writes it).
pub fn parse_message(raw: &[u8]) -> Result<MailPatch, B4Error> {
    let raw = crlf_to_lf(raw);
    let mut rest: &[u8] = &raw;
    // An mbox separator line, as in a `git format-patch` file. mailparse would read it as a
    // header named `From 0000… Mon Sep 17 00`.
    if rest.starts_with(b"From ") {
        rest = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(&[][..], |nl| &rest[nl + 1..]);
    }
    // mailparse reads any first line as a header (one without a colon becomes a name with an
    // empty value), so text that is not a mail at all must be caught here.
    let first_line = rest.split(|&b| b == b'\n').next().unwrap_or_default();
    if !is_header_line(first_line) {
        return Err(B4Error::NoHeaders {
            first_line: String::from_utf8_lossy(first_line)
                .chars()
                .take(80)
                .collect(),
        });
    }
    let (headers, body_at) =
        mailparse::parse_headers(rest).map_err(|source| B4Error::Headers { source })?;
    let body = &rest[body_at..];
    // Unfolded, with RFC 2047 encoded words decoded.
    let get = |name: &str| headers.get_first_value(name).map(|v| v.trim().to_owned());

    let subject = get("Subject").ok_or(B4Error::MissingHeader { name: "Subject" })?;
    let header_from = get("From").ok_or(B4Error::MissingHeader { name: "From" })?;
    let message_id = get("Message-ID")
        .map(|m| m.trim_start_matches('<').trim_end_matches('>').to_owned())
        .filter(|m| !m.is_empty());
    let date = get("Date");

    let content_type =
        get("Content-Type").map_or_else(Default::default, |ct| mailparse::parse_content_type(&ct));
    if content_type.mimetype.starts_with("multipart/") {
        return Err(B4Error::Multipart {
            content_type: content_type.mimetype,
        });
    }
    // Not `content_type.charset`: it says us-ascii for a missing charset, and lab reads an
    // unlabelled body as UTF-8 (a missing label is common, a non-UTF-8 patch is not).
    let charset = content_type
        .params
        .get("charset")
        .map(|c| c.trim().to_ascii_lowercase());
    let encoding = get("Content-Transfer-Encoding")
        .unwrap_or_else(|| "7bit".to_owned())
        .to_ascii_lowercase();
    let bytes = match encoding.as_str() {
        "7bit" | "8bit" | "binary" => body.to_vec(),
        "quoted-printable" if looks_quoted_printable(body) => decode_quoted_printable(body),
        "base64" => decode_base64(body).unwrap_or_else(|| body.to_vec()),
        // Already decoded by b4 (see the module comment).
        "quoted-printable" => body.to_vec(),
        other => {
            return Err(B4Error::UnsupportedEncoding {
                encoding: other.to_owned(),
            })
        }
    };
    let text = decode_charset(&bytes, charset.as_deref())?;

    let (in_body, message_start) = in_body_headers(&text);
    let in_body_get = |name: &str| {
        in_body
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let from = in_body_get("From").unwrap_or_else(|| header_from.clone());
    let commit_subject = in_body_get("Subject").unwrap_or_else(|| subject.clone());
    let parts = parse_subject(&commit_subject);
    let (body_msg, diff) = split_body(&text[message_start..]);

    let mut raw_text =
        String::from("From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n");
    let _ = writeln!(raw_text, "From: {header_from}");
    if let Some(d) = &date {
        let _ = writeln!(raw_text, "Date: {d}");
    }
    let _ = writeln!(raw_text, "Subject: {subject}");
    if let Some(m) = &message_id {
        let _ = writeln!(raw_text, "Message-ID: <{m}>");
    }
    if !(text.is_ascii() && subject.is_ascii() && header_from.is_ascii()) {
        raw_text.push_str(
            "MIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\n\
             Content-Transfer-Encoding: 8bit\n",
        );
    }
    raw_text.push('\n');
    raw_text.push_str(&text);

    Ok(MailPatch {
        subject,
        clean_subject: parts.clean,
        prefixes: parts.prefixes,
        version: parts.version,
        index: parts.index,
        total: parts.total,
        from,
        message_id,
        date,
        body: body_msg,
        diff,
        raw_text,
    })
}

fn crlf_to_lf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\r' && raw.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(raw[i]);
        i += 1;
    }
    out
}

/// `Name: value`, the name printable ASCII without spaces (RFC 5322 2.2).
fn is_header_line(line: &[u8]) -> bool {
    line.iter()
        .position(|&b| b == b':')
        .is_some_and(|colon| colon > 0 && line[..colon].iter().all(u8::is_ascii_graphic))
}

/// `From:`, `Subject:` and `Date:` lines opening the body, up to a blank line (git am's
/// in-body headers), with their values decoded. Returns them and where the rest of the body
/// starts.
fn in_body_headers(text: &str) -> (Vec<(&'static str, String)>, usize) {
    let mut found = Vec::new();
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let l = line.trim_end_matches('\n');
        if l.trim().is_empty() {
            if found.is_empty() {
                return (found, 0);
            }
            return (found, pos + line.len());
        }
        let header = l.split_once(':').and_then(|(n, _)| {
            let name = ["From", "Subject", "Date"]
                .into_iter()
                .find(|name| n.eq_ignore_ascii_case(name))?;
            let (header, _) = mailparse::parse_header(l.as_bytes()).ok()?;
            Some((name, header.get_value().trim().to_owned()))
        });
        match header {
            Some(h) => found.push(h),
            None => return (Vec::new(), 0),
        }
        pos += line.len();
    }
    (Vec::new(), 0)
}

struct SubjectParts {
    clean: String,
    prefixes: Vec<String>,
    version: Option<u32>,
    index: Option<u32>,
    total: Option<u32>,
}

/// `[PATCH RFC v2 03/12] sched/wait: ...` → its parts.
fn parse_subject(subject: &str) -> SubjectParts {
    let mut parts = SubjectParts {
        clean: String::new(),
        prefixes: Vec::new(),
        version: None,
        index: None,
        total: None,
    };
    let mut rest = subject.trim();
    while let Some(inner_start) = rest.strip_prefix('[') {
        let Some(close) = inner_start.find(']') else {
            break;
        };
        for word in inner_start[..close]
            .split([' ', ','])
            .filter(|w| !w.is_empty())
        {
            let version = word
                .strip_prefix(['v', 'V'])
                .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|n| n.parse().ok());
            let position = word.split_once('/').and_then(|(a, b)| {
                let a: u32 = a.parse().ok()?;
                let b: u32 = b.parse().ok()?;
                Some((a, b))
            });
            match (version, position) {
                (Some(v), _) => parts.version = Some(v),
                (None, Some((i, n))) => {
                    parts.index = Some(i);
                    parts.total = Some(n);
                }
                (None, None) => parts.prefixes.push(word.to_owned()),
            }
        }
        rest = inner_start[close + 1..].trim_start();
    }
    parts.clean = rest.trim().to_owned();
    parts
}

/// Splits the decoded body into the commit message and the diff.
fn split_body(text: &str) -> (String, String) {
    let lines: Vec<(usize, &str)> = text
        .split_inclusive('\n')
        .scan(0, |pos, l| {
            let at = *pos;
            *pos += l.len();
            Some((at, l))
        })
        .collect();
    let is_diff_start = |i: usize| {
        let l = lines[i].1;
        l.starts_with("diff --git ")
            || l.starts_with("--- ") && lines.get(i + 1).is_some_and(|n| n.1.starts_with("+++ "))
    };
    let start = (0..lines.len()).find(|&i| is_diff_start(i));
    let msg_end_line = (0..start.unwrap_or(lines.len()))
        .find(|&i| lines[i].1.trim_end() == "---")
        .or(start);
    let msg_end = msg_end_line.map_or(text.len(), |i| lines[i].0);
    let message = format!("{}\n", text[..msg_end].trim_end());
    let message = if message == "\n" {
        String::new()
    } else {
        message
    };
    let Some(start) = start else {
        return (message, String::new());
    };
    let end = diff_end(&lines[start..]);
    let from = lines[start].0;
    let to = lines.get(start + end).map_or(text.len(), |&(at, _)| at);
    (message, text[from..to].to_owned())
}

/// How many of `lines` (starting at a diff) belong to the diff: hunks are followed by their
/// line counts, so that a removed line `-- ` is not taken for the signature.
fn diff_end(lines: &[(usize, &str)]) -> usize {
    const SYNTAX: &[&str] = &[
        "diff ",
        "index ",
        "--- ",
        "+++ ",
        "new file mode ",
        "deleted file mode ",
        "old mode ",
        "new mode ",
        "similarity index ",
        "dissimilarity index ",
        "rename from ",
        "rename to ",
        "copy from ",
        "copy to ",
        "Binary files ",
        "\\ ",
    ];
    let (mut old, mut new) = (0u64, 0u64);
    let mut binary = false;
    let mut used = 0;
    for (i, &(_, raw)) in lines.iter().enumerate() {
        let l = raw.trim_end_matches('\n');
        if old > 0 || new > 0 {
            match l.as_bytes().first() {
                // An empty line is a blank context line whose space a mailer ate.
                Some(b' ') | None if old > 0 && new > 0 => {
                    old -= 1;
                    new -= 1;
                }
                Some(b'-') if old > 0 => old -= 1,
                Some(b'+') if new > 0 => new -= 1,
                Some(b'\\') => {}
                _ => return used,
            }
            used = i + 1;
            continue;
        }
        if l.starts_with("diff --git ") {
            binary = false;
        } else if binary {
            if l == "-- " {
                return used;
            }
            used = i + 1;
            continue;
        }
        if let Some(counts) = l.strip_prefix("@@ -") {
            let Some((o, n)) = hunk_counts(counts) else {
                return used;
            };
            (old, new) = (o, n);
        } else if l == "GIT binary patch" {
            binary = true;
        } else if !SYNTAX.iter().any(|s| l.starts_with(s)) {
            return used;
        }
        used = i + 1;
    }
    used
}

/// `a,b +c,d @@ ...` → (b, d); a missing count is 1.
fn hunk_counts(s: &str) -> Option<(u64, u64)> {
    let (old, rest) = s.split_once(" +")?;
    let (new, _) = rest.split_once(" @@")?;
    let count = |r: &str| -> Option<u64> {
        match r.split_once(',') {
            Some((_, n)) => n.parse().ok(),
            None => r.parse::<u64>().ok().map(|_| 1),
        }
    };
    Some((count(old)?, count(new)?))
}

fn decode_charset(bytes: &[u8], charset: Option<&str>) -> Result<String, B4Error> {
    match charset.unwrap_or("us-ascii") {
        "utf-8" | "utf8" | "us-ascii" | "ascii" => {
            String::from_utf8(bytes.to_vec()).map_err(|_| B4Error::Charset {
                charset: charset.unwrap_or("UTF-8").to_owned(),
            })
        }
        "iso-8859-1" | "latin1" | "iso8859-1" => Ok(bytes.iter().map(|&b| char::from(b)).collect()),
        other => Err(B4Error::UnsupportedCharset {
            charset: other.to_owned(),
        }),
    }
}

/// Whether a body is quoted-printable as an encoder writes it (RFC 2045 6.7): 7-bit, lines
/// of at most 76 characters, and every `=` followed by two hex digits or ending the line.
fn looks_quoted_printable(body: &[u8]) -> bool {
    body.split(|&b| b == b'\n').all(|line| {
        if line.len() > 76 || !line.is_ascii() {
            return false;
        }
        line.iter().enumerate().all(|(i, &b)| {
            b != b'=' || {
                let rest = &line[i + 1..];
                rest.iter().all(|c| *c == b' ' || *c == b'\t')
                    || rest.len() >= 2 && rest[0].is_ascii_hexdigit() && rest[1].is_ascii_hexdigit()
            }
        })
    })
}

/// Decodes quoted-printable (RFC 2045 6.7): `=XX` escapes and `=` soft line breaks. A `=`
/// not starting either is kept. Unencoded trailing white space is kept too, although
/// RFC 2045's rule 3, which `quoted_printable` follows, deletes it: an encoder writes it as
/// `=20`, so white space that is there unencoded is the text's own (a patch's blank context
/// lines are a single space, and a body b4 already decoded can pass for quoted-printable).
fn decode_quoted_printable(body: &[u8]) -> Vec<u8> {
    match quoted_printable::decode(
        escape_what_the_decoder_drops(body),
        quoted_printable::ParseMode::Robust,
    ) {
        // The decoder ends its lines with CRLF, the canonical form; lab reads LF.
        Ok(decoded) => crlf_to_lf(&decoded),
        // Robust mode does not fail; were it to, the body was not encoded after all.
        Err(_) => body.to_vec(),
    }
}

/// Escapes what `quoted_printable` would delete but lab keeps: white space ending a line that
/// is not a soft line break, and control characters other than tab.
fn escape_what_the_decoder_drops(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    for line in body.split_inclusive(|&b| b == b'\n') {
        let (content, newline) = match line.split_last() {
            Some((b'\n', content)) => (content, &b"\n"[..]),
            _ => (line, &b""[..]),
        };
        let text_end = content
            .iter()
            .rposition(|&b| b != b' ' && b != b'\t')
            .map_or(0, |p| p + 1);
        let soft = text_end > 0 && content[text_end - 1] == b'=';
        for (i, &b) in content.iter().enumerate() {
            if (i >= text_end && !soft) || (b.is_ascii_control() && b != b'\t') {
                out.extend_from_slice(format!("={b:02X}").as_bytes());
            } else {
                out.push(b);
            }
        }
        out.extend_from_slice(newline);
    }
    out
}

/// Decodes a base64 body, line breaks skipped. None when it is not validly encoded (a
/// character outside the alphabet, a length that does not decode): then b4 already decoded
/// it, as a patch or cover letter in base64 is mostly plain ASCII text once decoded.
fn decode_base64(body: &[u8]) -> Option<Vec<u8>> {
    // Padding optional and stray bits ignored, as mail readers do.
    const MIME: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    let compact: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if compact.is_empty() {
        return None;
    }
    MIME.decode(compact).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::path::{Path, PathBuf};

    fn manifest() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR"))
    }

    fn shipped_patch() -> (PathBuf, String) {
        let dir = manifest().join("../patches/futex-lockless-wakeup-revert");
        let path = dir.join("0001-futex-Wake-waiters-under-hb-lock-instead-of-after-it.patch");
        let text = std::fs::read_to_string(&path).expect("shipped patch");
        (path, text)
    }

    /// The diff of a `git format-patch` file, found independently of the parser: from the
    /// first `diff --git` to the `-- ` signature.
    fn expected_diff(text: &str) -> &str {
        let start = text.find("diff --git ").expect("diff");
        let end = text.rfind("\n-- \n").expect("signature") + 1;
        &text[start..end]
    }

    fn fixture() -> Vec<u8> {
        std::fs::read(manifest().join("tests/fixtures/gate/b4-message.eml")).expect("fixture")
    }

    #[test]
    fn fixture_is_really_quoted_printable_and_folded() {
        let raw = String::from_utf8(fixture()).expect("ascii");
        assert!(raw.contains("Content-Transfer-Encoding: quoted-printable"));
        assert!(raw.contains("=3D"), "`=` must be escaped");
        assert!(raw.contains("=20\n"), "trailing spaces must be escaped");
        assert!(raw.contains("=\n"), "long lines must be soft-broken");
        assert!(raw.contains("Subject: [PATCH v2 1/2] futex: Wake waiters under hb->lock\n "));
    }

    #[test]
    fn parses_a_quoted_printable_patch_mail() {
        let (_, original) = shipped_patch();
        let m = parse_message(&fixture()).expect("parses");
        assert_eq!(
            m.subject,
            "[PATCH v2 1/2] futex: Wake waiters under hb->lock instead of after it is dropped"
        );
        assert_eq!(
            m.clean_subject,
            "futex: Wake waiters under hb->lock instead of after it is dropped"
        );
        assert_eq!(m.prefixes, ["PATCH"]);
        assert_eq!((m.version, m.index, m.total), (Some(2), Some(1), Some(2)));
        assert_eq!(m.from, "Lab Developer <lab@example.org>");
        assert_eq!(
            m.message_id.as_deref(),
            Some("20261121092949.4242-2-lab@example.org")
        );
        assert_eq!(m.diff, expected_diff(&original), "byte-identical diff");
        assert!(m.body.starts_with("Since commit 1d0dcb3ad9d3"));
        assert!(m
            .body
            .ends_with("Signed-off-by: Lab Developer <lab@example.org>\n"));
    }

    #[test]
    fn raw_text_parses_like_the_original_patch() {
        let (path, original) = shipped_patch();
        let m = parse_message(&fixture()).expect("parses");
        let ours = crate::kernel::patch::parse_diff(&m.raw_text, Path::new("mail"), 0)
            .expect("lab parses raw_text");
        let theirs =
            crate::kernel::patch::parse_diff(&original, &path, 0).expect("lab parses original");
        assert_eq!(ours, theirs);
        assert!(!ours.is_empty());
    }

    #[test]
    fn raw_text_is_git_am_able_and_checkpatch_clean() {
        let tree = crate::gate::checkpatch::tests::kernel_tree();
        let m = parse_message(&fixture()).expect("parses");

        let dir = tempfile::tempdir().expect("tempdir");
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .args([
                    "-c",
                    "user.name=Lab Test",
                    "-c",
                    "user.email=lab@example.org",
                ])
                .args(args)
                .current_dir(dir.path())
                .env_remove("GIT_DIR")
                .output()
                .expect("git runs");
            assert!(
                out.status.success(),
                "git {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        git(&["init", "-q"]);
        std::fs::create_dir_all(dir.path().join("kernel/futex")).expect("mkdir");
        std::fs::copy(
            tree.join("kernel/futex/waitwake.c"),
            dir.path().join("kernel/futex/waitwake.c"),
        )
        .expect("copy");
        git(&["add", "."]);
        git(&["commit", "-q", "-m", "base"]);
        std::fs::write(dir.path().join("mail.patch"), &m.raw_text).expect("write");
        git(&["am", "-q", "mail.patch"]);
        assert_eq!(git(&["log", "-1", "--format=%s"]).trim(), m.clean_subject);
        assert_eq!(
            git(&["log", "-1", "--format=%an <%ae>"]).trim(),
            "Lab Developer <lab@example.org>"
        );

        let report = crate::gate::checkpatch::run_checkpatch(
            &tree,
            &m.raw_text,
            std::time::Duration::from_secs(120),
        )
        .expect("checkpatch runs");
        assert!(report.is_clean(), "{report:#?}");
    }

    #[test]
    fn parses_a_format_patch_file_as_is() {
        let (_, original) = shipped_patch();
        let m = parse_message(original.as_bytes()).expect("parses");
        assert_eq!(m.diff, expected_diff(&original));
        assert_eq!(m.prefixes, ["PATCH"]);
        assert_eq!((m.version, m.index, m.total), (None, None, None));
        assert_eq!(m.message_id, None);
    }

    #[test]
    fn a_body_b4_already_decoded_is_not_decoded_twice() {
        // b4's get_msg_as_bytes() keeps the QP header but writes the decoded body.
        let (_, original) = shipped_patch();
        let (head, body) = original.split_once("\n\n").expect("headers");
        let mail = format!(
            "{head}\nMIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\n\
             Content-Transfer-Encoding: quoted-printable\n\n{body}"
        );
        let m = parse_message(mail.as_bytes()).expect("parses");
        assert_eq!(m.diff, expected_diff(&original));
    }

    #[test]
    fn crlf_mail_and_base64_body() {
        let body = "Fix it.\n\nSigned-off-by: A <a@example.org>\n---\ndiff --git a/x b/x\n\
                    --- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n";
        let b64 = encode_base64(body.as_bytes());
        let mail = format!(
            "From: =?UTF-8?q?Andr=C3=A9_D=C3=BCrr?= <a@example.org>\r\nSubject: [RFC PATCH \
             v3 0/7] =?UTF-8?B?w6k=?=\r\n =?UTF-8?q?t=C3=A9?= x\r\nContent-Transfer-Encoding: \
             base64\r\nContent-Type: text/plain; charset=\"utf-8\"\r\n\r\n{}",
            b64.replace('\n', "\r\n")
        );
        let m = parse_message(mail.as_bytes()).expect("parses");
        assert_eq!(m.from, "André Dürr <a@example.org>");
        assert_eq!(m.subject, "[RFC PATCH v3 0/7] été x");
        assert_eq!(m.prefixes, ["RFC", "PATCH"]);
        assert_eq!((m.version, m.index, m.total), (Some(3), Some(0), Some(7)));
        assert_eq!(m.body, "Fix it.\n\nSigned-off-by: A <a@example.org>\n");
        assert_eq!(
            m.diff,
            "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n"
        );
        assert!(m.raw_text.contains("Content-Transfer-Encoding: 8bit"));
    }

    /// Base64 in 76-character lines, as a mailer writes it.
    fn encode_base64(data: &[u8]) -> String {
        let flat = base64::engine::general_purpose::STANDARD.encode(data);
        let mut out = String::new();
        for line in flat.as_bytes().chunks(76) {
            out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            out.push('\n');
        }
        out
    }

    #[test]
    fn removed_signature_like_lines_stay_in_the_diff() {
        // A removed line whose text is "- " reads "-- ", like the signature separator.
        let mail = "From: A <a@example.org>\nSubject: [PATCH] doc: drop a dash\n\nDrop it.\n---\n\
                    diff --git a/d.txt b/d.txt\n--- a/d.txt\n+++ b/d.txt\n@@ -1,3 +1,2 @@\n a\n-- \n \n\
                    -- \n2.47.3\n";
        let m = parse_message(mail.as_bytes()).expect("parses");
        assert_eq!(
            m.diff,
            "diff --git a/d.txt b/d.txt\n--- a/d.txt\n+++ b/d.txt\n@@ -1,3 +1,2 @@\n a\n-- \n \n"
        );
    }

    #[test]
    fn in_body_from_is_the_author() {
        let mail = "From: Sender <s@example.org>\nSubject: [PATCH 2/3] x: y\n\n\
                    From: Author <a@example.org>\n\nBody.\n---\n--- a/f\n+++ b/f\n@@ -1 +1 @@\n-a\n+b\n";
        let m = parse_message(mail.as_bytes()).expect("parses");
        assert_eq!(m.from, "Author <a@example.org>");
        assert_eq!(m.body, "Body.\n");
        assert_eq!(m.diff, "--- a/f\n+++ b/f\n@@ -1 +1 @@\n-a\n+b\n");
        assert!(m.raw_text.contains("\nFrom: Sender <s@example.org>\n"));
    }

    #[test]
    fn a_cover_letter_has_no_diff() {
        let mail = "From: A <a@example.org>\nSubject: [PATCH v2 0/2] futex: wake under the lock\n\
                    Message-ID: <cover@example.org>\n\nThis series...\n\nA (2):\n  one\n  two\n";
        let m = parse_message(mail.as_bytes()).expect("parses");
        assert_eq!(m.index, Some(0));
        assert_eq!(m.diff, "");
        assert_eq!(m.message_id.as_deref(), Some("cover@example.org"));
    }

    #[test]
    fn rejects_what_it_cannot_read() {
        assert!(matches!(
            parse_message(b"just some text\n"),
            Err(B4Error::NoHeaders { .. })
        ));
        assert!(matches!(
            parse_message(b"From: a\n\nbody\n"),
            Err(B4Error::MissingHeader { name: "Subject" })
        ));
        assert!(matches!(
            parse_message(b"From: a\nSubject: s\nContent-Type: multipart/mixed; boundary=x\n\n"),
            Err(B4Error::Multipart { .. })
        ));
        assert!(matches!(
            parse_message(b"From: a\nSubject: s\nContent-Type: text/plain; charset=koi8-r\n\nx\n"),
            Err(B4Error::UnsupportedCharset { .. })
        ));
    }

    #[test]
    fn quoted_printable_decoding() {
        let enc = b"a =3D b;=20\nlong=\nline\n=C3=A9\n";
        assert!(looks_quoted_printable(enc));
        assert_eq!(
            decode_quoted_printable(enc),
            "a = b; \nlongline\né\n".as_bytes()
        );
        assert!(!looks_quoted_printable(b"\tq->lock_ptr = NULL;\n"));
    }

    #[test]
    fn quoted_printable_keeps_what_the_crate_would_drop() {
        // Unencoded trailing white space (a blank context line), a form feed, a soft line
        // break with white space after the `=`, and no final line break.
        let enc = b"a=3Db\n \n\x0c\nsoft= \nend";
        assert!(looks_quoted_printable(enc));
        assert_eq!(decode_quoted_printable(enc), b"a=b\n \n\x0c\nsoftend");
    }

    #[test]
    fn a_base64_body_b4_already_decoded_is_kept() {
        let mail = "From: A <a@example.org>\nSubject: [PATCH 0/2] x\n\
                    Content-Transfer-Encoding: base64\n\nHello, world.\n";
        let m = parse_message(mail.as_bytes()).expect("parses");
        assert_eq!(m.body, "Hello, world.\n");
        // A length that cannot be base64 (5 characters) is not decoded either.
        assert_eq!(decode_base64(b"Hello\n"), None);
        assert_eq!(decode_base64(b"aGVsbG8=\n"), Some(b"hello".to_vec()));
        assert_eq!(decode_base64(b"aGVsbG8\n"), Some(b"hello".to_vec()));
    }

    #[test]
    fn header_lines_mailparse_would_misread() {
        // Malformed lines inside the header block are skipped, not fatal.
        let mail = "From: A <a@example.org>\nnot a header\nSubject: [PATCH] x: y\n\nBody.\n";
        let m = parse_message(mail.as_bytes()).expect("parses");
        assert_eq!(m.subject, "[PATCH] x: y");
        assert!(matches!(
            parse_message(b" From: a\nSubject: s\n\nx\n"),
            Err(B4Error::NoHeaders { .. })
        ));
        assert!(matches!(parse_message(b""), Err(B4Error::NoHeaders { .. })));
    }

    /// Header values that steer the decoding: each transfer encoding and charset the parser
    /// knows, some it does not, and broken ones.
    const HEADER_VALUES: &[&str] = &[
        "Content-Transfer-Encoding: base64",
        "Content-Transfer-Encoding: quoted-printable",
        "Content-Transfer-Encoding: 8bit",
        "Content-Transfer-Encoding: x-uuencode",
        "Content-Type: text/plain; charset=ISO-8859-1",
        "Content-Type: text/plain; charset=\"koi8-r\"",
        "Content-Type: multipart/mixed; boundary=\"x\"",
        "Content-Type: text/plain; charset=",
        "Subject: =?UTF-8?B?W1BBVENIIHYyIDEvMl0gZnV0ZXg6IMOp?=",
        "Subject: =?UTF-8?Q?=E2=82?=",
        "Subject: [PATCH v99999999999 4294967296/4294967297] x",
        "Subject: [[[[",
        "From: =?ISO-8859-1?Q?J=F6rg?= <j@example.org>",
        "Message-ID: <>",
        "From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001",
        "From: x",
        "Subject: y",
        "Date: x",
        "",
        " folded",
        "--- a/kernel/futex/core.c",
        "+++ b/kernel/futex/core.c",
        "@@ -1,99999999999999999999 +1 @@",
        "@@ -1 +1,18446744073709551615 @@",
        "-- ",
        "GIT binary patch",
        "=",
        "=\r",
        "==3D=",
        "\r",
    ];

    /// One edit to the fixture's bytes.
    #[derive(Debug, Clone)]
    enum MailEdit {
        Truncate(prop::sample::Index),
        Flip(prop::sample::Index, u8),
        Insert(prop::sample::Index, Vec<u8>),
        /// Replaces the line holding the byte at the index.
        ReplaceLine(prop::sample::Index, usize),
        DuplicateLine(prop::sample::Index),
    }

    fn mail_edit() -> impl Strategy<Value = MailEdit> {
        prop_oneof![
            any::<prop::sample::Index>().prop_map(MailEdit::Truncate),
            (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| MailEdit::Flip(i, b)),
            (
                any::<prop::sample::Index>(),
                proptest::collection::vec(any::<u8>(), 1..8)
            )
                .prop_map(|(i, b)| MailEdit::Insert(i, b)),
            (any::<prop::sample::Index>(), 0..HEADER_VALUES.len())
                .prop_map(|(i, v)| MailEdit::ReplaceLine(i, v)),
            any::<prop::sample::Index>().prop_map(MailEdit::DuplicateLine),
        ]
    }

    fn line_around(raw: &[u8], at: usize) -> (usize, usize) {
        let start = raw[..at]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        let end = raw[at..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(raw.len(), |p| at + p + 1);
        (start, end)
    }

    fn apply_mail_edit(raw: &mut Vec<u8>, e: &MailEdit) {
        match e {
            MailEdit::Truncate(i) => raw.truncate(i.index(raw.len() + 1)),
            MailEdit::Flip(i, b) if !raw.is_empty() => {
                let at = i.index(raw.len());
                raw[at] = *b;
            }
            MailEdit::Insert(i, bytes) => {
                let at = i.index(raw.len() + 1);
                raw.splice(at..at, bytes.iter().copied());
            }
            MailEdit::ReplaceLine(i, v) if !raw.is_empty() => {
                let (start, end) = line_around(raw, i.index(raw.len()));
                raw.splice(start..end, format!("{}\n", HEADER_VALUES[*v]).into_bytes());
            }
            MailEdit::DuplicateLine(i) if !raw.is_empty() => {
                let (start, end) = line_around(raw, i.index(raw.len()));
                let line = raw[start..end].to_vec();
                raw.splice(start..start, line);
            }
            _ => {}
        }
    }

    /// Parses `raw`; what it accepts must hold together: its parts are what the patch
    /// parser reads next, and that must not panic on them either.
    fn parse_and_check(raw: &[u8]) -> Result<(), TestCaseError> {
        let Ok(m) = parse_message(raw) else {
            return Ok(());
        };
        prop_assert!(m.raw_text.starts_with("From "));
        prop_assert!(
            m.raw_text.contains(&m.diff),
            "the diff is part of the patch text"
        );
        let _ = crate::kernel::patch::parse_diff(&m.diff, Path::new("mail"), 0);
        let _ = crate::kernel::patch::parse_diff(&m.raw_text, Path::new("mail"), 0);
        Ok(())
    }

    proptest! {

        #[test]
        fn fuzz_parse_message_takes_any_bytes(
            bytes in proptest::collection::vec(any::<u8>(), 0..400),
            text in "\\PC{0,200}",
            header in 0..HEADER_VALUES.len(),
        ) {
            parse_and_check(&bytes)?;
            parse_and_check(text.as_bytes())?;
            // Past the first-line check, into mailparse and the body decoders.
            let mail = format!("From: a <a@b>\nSubject: s\n{}\n\n{text}", HEADER_VALUES[header]);
            parse_and_check(mail.as_bytes())?;
            let mut with_body = b"Subject: s\nFrom: f\nContent-Transfer-Encoding: base64\n\n".to_vec();
            with_body.extend_from_slice(&bytes);
            parse_and_check(&with_body)?;
        }

        #[test]
        fn fuzz_parse_message_takes_edited_fixtures(edits in proptest::collection::vec(mail_edit(), 1..5)) {
            let mut raw = fixture();
            for e in &edits {
                apply_mail_edit(&mut raw, e);
            }
            parse_and_check(&raw)?;
        }
    }
}
