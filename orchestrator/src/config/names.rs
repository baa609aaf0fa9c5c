//! Names that come from outside (flags, lab.toml, expect.toml) and end up on a command line:
//! test names run in the guest's shell, patch-set names become labels and paths. Each is
//! checked once, where it enters, against a small character set, so that no shell
//! metacharacter or option-looking word gets that far; what the guest's shell still sees is
//! quoted besides ([`shell_quote`]).

/// Why a name was refused: what kind of name, the name, and the characters allowed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{kind} {name:?}: {why}")]
pub struct NameError {
    pub kind: &'static str,
    pub name: String,
    pub why: String,
}

/// Characters of a test name besides ASCII letters and digits: `kselftest:futex/futex_wait`
/// style names need `:` and `/`.
const TEST_EXTRA: &str = "_.:/+-";

/// Characters of a patch-set name (a folder under `patches/`) besides letters and digits.
const SET_EXTRA: &str = "_.+-";

fn check(kind: &'static str, name: &str, extra: &str) -> Result<(), NameError> {
    let refuse = |why: String| {
        Err(NameError {
            kind,
            name: name.to_owned(),
            why,
        })
    };
    if name.is_empty() {
        return refuse("empty".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || extra.contains(*c)))
    {
        let what = if c.is_whitespace() {
            "white space".to_owned()
        } else if "$`;&|<>()'\"\\*?[]{}~!#".contains(c) {
            format!("the shell character {c:?}")
        } else {
            format!("the character {c:?}")
        };
        return refuse(format!(
            "{what} is not allowed: use ASCII letters, digits and {}",
            extra
                .chars()
                .map(|c| format!("{c}"))
                .collect::<Vec<_>>()
                .join(" ")
        ));
    }
    if name.starts_with('-') || name.starts_with('.') {
        return refuse(
            "may not start with - or . (it would read as an option or a hidden file)".into(),
        );
    }
    if name.split('/').any(|part| part.is_empty() || part == "..") {
        return refuse("an empty or .. path component is not allowed".into());
    }
    Ok(())
}

/// A guest test's name: letters, digits and `_ . : / + -`.
pub fn check_test(name: &str) -> Result<(), NameError> {
    check("test", name, TEST_EXTRA)
}

/// A patch set named by its folder under `patches/` (not a path): letters, digits and
/// `_ . + -`.
pub fn check_patch_set(name: &str) -> Result<(), NameError> {
    check("patch set", name, SET_EXTRA)
}

/// A `[target.NAME]`'s name, as `--target` gives it: letters, digits and `_ . + -`.
pub fn check_target(name: &str) -> Result<(), NameError> {
    check("target", name, SET_EXTRA)
}

/// `s` as one word for a POSIX shell: in single quotes, each `'` written as `'\''`. Words
/// of safe characters only are left as they are, for readable logs.
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.,:/=+-@%".contains(c));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_names_of_the_suite_and_of_kselftest_pass() {
        for ok in [
            "futex_errno",
            "kselftest:futex/futex_waitv",
            "kselftest:timers/mqueue-lat",
            "kselftest:epoll/epoll_wakeup_test",
            "rt:cyclictest",
            "perf:futex-wake-parallel",
            "a.b-c+d",
        ] {
            assert_eq!(check_test(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn shell_characters_are_refused_by_name() {
        for (bad, says) in [
            ("futex_errno;reboot", "shell character ';'"),
            ("a$(id)", "shell character '$'"),
            ("a`id`", "shell character '`'"),
            ("a b", "white space"),
            ("a|b", "shell character '|'"),
            ("a>b", "shell character '>'"),
            ("a\nb", "white space"),
            ("-rf", "may not start with -"),
            ("../etc", "may not start with"),
            ("x/../y", ".. path component"),
            ("", "empty"),
            ("é", "the character 'é'"),
        ] {
            let e = check_test(bad).expect_err(bad);
            assert!(e.to_string().contains(says), "{bad}: {e}");
            assert!(e.to_string().starts_with("test "), "{e}");
        }
        assert!(
            check_patch_set("sets/x").is_err(),
            "a set name is one folder"
        );
        assert!(check_patch_set("futex-race-amplifiers").is_ok());
    }

    #[test]
    fn quoting_survives_a_real_shell() {
        for word in [
            "plain", "a b", "it's", "$(id)", "`id`", "a\"b", "", "x;y", "'", "\\",
        ] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", shell_quote(word)))
                .output()
                .expect("sh runs");
            assert_eq!(String::from_utf8_lossy(&out.stdout), word, "{word:?}");
        }
    }
}
