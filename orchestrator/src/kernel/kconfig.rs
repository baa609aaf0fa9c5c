//! Kernel configuration: fragments, merging them onto a base `.config`, and verifying that
//! every option a fragment asked for survived `olddefconfig`.
//!
//! Kconfig silently drops an option whose dependencies do not hold (PREEMPT_RT without EXPERT,
//! VIRTIO_PCI without VIRTIO_MENU). lab treats that as an error and explains it from the
//! Kconfig sources: the option's `depends on`, the `if` blocks and menus around it, evaluated
//! against the final configuration.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum KconfigError {
    #[error("config fragment {name:?} not found at {path} (a plain name is looked up in the config dir of lab.toml, a path with a / is taken as given)")]
    FragmentMissing { name: String, path: PathBuf },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: not a config line: {text:?} (expected CONFIG_X=value or `# CONFIG_X is not set`)")]
    Syntax {
        path: PathBuf,
        line: usize,
        text: String,
    },
    #[error("{} requested config option(s) did not survive olddefconfig:\n{}", .0.len(), list(.0))]
    Dropped(Vec<Dropped>),
}

fn list(items: &[Dropped]) -> String {
    items
        .iter()
        .map(|d| format!("  - {d}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One requested option that does not hold in the final config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub option: String,
    pub wanted: String,
    pub got: String,
    /// Which fragment asked for it.
    pub fragment: String,
    /// Why, read from Kconfig.
    pub reason: String,
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.got == "n" {
            "was dropped"
        } else {
            "did not hold"
        };
        write!(
            f,
            "{}={} {verb} (got {}; asked for by {}): {}",
            self.option, self.wanted, self.got, self.fragment, self.reason
        )
    }
}

/// A config fragment: requested values in file order, with where each came from.
#[derive(Debug, Clone, Default)]
pub struct Fragment {
    pub name: String,
    /// (option without CONFIG_, value as written: y, m, n, 8, "str").
    pub entries: Vec<(String, String)>,
}

/// Parses `.config` syntax: `CONFIG_X=v` and `# CONFIG_X is not set`; other comments and blank
/// lines are skipped.
pub fn parse_config_text(text: &str, path: &Path) -> Result<Vec<(String, String)>, KconfigError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# CONFIG_") {
            // With a name that is no option name, it is just a comment.
            if let Some(name) = rest.strip_suffix(" is not set").filter(|n| is_symbol(n)) {
                out.push((name.to_owned(), "n".to_owned()));
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let parsed = line
            .strip_prefix("CONFIG_")
            .and_then(|l| l.split_once('='))
            .filter(|(n, v)| is_symbol(n) && !v.is_empty());
        match parsed {
            Some((n, v)) => out.push((n.to_owned(), v.to_owned())),
            None => {
                return Err(KconfigError::Syntax {
                    path: path.to_owned(),
                    line: i + 1,
                    text: raw.to_owned(),
                })
            }
        }
    }
    Ok(out)
}

/// A config option's name, without `CONFIG_`: letters, digits and `_`.
fn is_symbol(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Where fragment `name` is read from. A plain name (`lockdep`) is `<dir>/<name>.config`,
/// with or without its `.config`. A name with a `/` in it is a path, taken as given (relative
/// to the working folder), with or without its `.config`; so is a `NAME.config` that is not in
/// `dir` but is a file here.
pub fn fragment_path(dir: &Path, name: &str) -> PathBuf {
    let with_ext = |n: &str| {
        if n.ends_with(".config") {
            n.to_owned()
        } else {
            format!("{n}.config")
        }
    };
    if name.contains('/') {
        let given = PathBuf::from(name);
        return if given.is_file() {
            given
        } else {
            PathBuf::from(with_ext(name))
        };
    }
    let in_dir = dir.join(with_ext(name));
    if !in_dir.is_file() && name.ends_with(".config") && Path::new(name).is_file() {
        return PathBuf::from(name);
    }
    in_dir
}

/// Loads fragment `name` from [`fragment_path`]; the fragment is named by its file's stem.
pub fn load_fragment(dir: &Path, name: &str) -> Result<(Fragment, String), KconfigError> {
    let path = fragment_path(dir, name);
    let name = path
        .file_name()
        .and_then(|f| f.to_str())
        .map(|f| f.strip_suffix(".config").unwrap_or(f))
        .unwrap_or(name);
    if !path.is_file() {
        return Err(KconfigError::FragmentMissing {
            name: name.to_owned(),
            path,
        });
    }
    let text = std::fs::read_to_string(&path).map_err(|source| KconfigError::Read {
        path: path.clone(),
        source,
    })?;
    let entries = parse_config_text(&text, &path)?;
    Ok((
        Fragment {
            name: name.to_owned(),
            entries,
        },
        text,
    ))
}

/// The merged request: option -> (value, fragment that set it last). Later fragments win, as
/// with `scripts/kconfig/merge_config.sh`; each override is reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    pub options: BTreeMap<String, (String, String)>,
    pub overrides: Vec<String>,
}

pub fn merge(fragments: &[Fragment]) -> Request {
    let mut req = Request::default();
    for frag in fragments {
        for (opt, val) in &frag.entries {
            if let Some((old, from)) = req.options.get(opt) {
                if old != val {
                    req.overrides.push(format!(
                        "CONFIG_{opt}={old} from {from} is overridden by {val} from {}",
                        frag.name
                    ));
                }
            }
            req.options
                .insert(opt.clone(), (val.clone(), frag.name.clone()));
        }
    }
    req
}

/// Writes the request onto a base `.config`: replaces each requested option's line (set or
/// "is not set") and appends the rest.
pub fn apply_to_base(base: &str, req: &Request) -> String {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = String::with_capacity(base.len() + 4096);
    for line in base.lines() {
        let name = line
            .strip_prefix("CONFIG_")
            .and_then(|l| l.split_once('=').map(|(n, _)| n))
            .or_else(|| {
                line.strip_prefix("# CONFIG_")
                    .and_then(|l| l.strip_suffix(" is not set"))
            });
        match name.and_then(|n| req.options.get(n).map(|v| (n, v))) {
            Some((n, (v, _))) => {
                out.push_str(&render(n, v));
                seen.insert(n.to_owned());
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    for (n, (v, _)) in &req.options {
        if !seen.contains(n) {
            out.push_str(&render(n, v));
            out.push('\n');
        }
    }
    out
}

fn render(name: &str, value: &str) -> String {
    if value == "n" {
        format!("# CONFIG_{name} is not set")
    } else {
        format!("CONFIG_{name}={value}")
    }
}

/// Final config values: option -> value, with "n" for unset.
pub fn config_map(text: &str) -> BTreeMap<String, String> {
    parse_config_text(text, Path::new(".config"))
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// Checks every requested option against the final config. `explain` gives the reason for
/// each that failed (see [`KconfigIndex::explain`]).
pub fn verify(
    req: &Request,
    final_config: &str,
    explain: impl Fn(&str, &BTreeMap<String, String>) -> String,
) -> Result<(), KconfigError> {
    let got = config_map(final_config);
    let mut dropped = Vec::new();
    for (opt, (want, frag)) in &req.options {
        let have = got.get(opt).map_or("n", String::as_str);
        if have != want {
            dropped.push(Dropped {
                option: opt.clone(),
                wanted: want.clone(),
                got: have.to_owned(),
                fragment: frag.clone(),
                reason: explain(opt, &got),
            });
        }
    }
    if dropped.is_empty() {
        Ok(())
    } else {
        Err(KconfigError::Dropped(dropped))
    }
}

/// What Kconfig says about each symbol: its definitions' dependencies, including enclosing
/// `if` blocks, menus and choices in the same file, and its `range`.
#[derive(Debug, Default)]
pub struct KconfigIndex {
    pub defs: BTreeMap<String, Vec<SymbolDef>>,
    /// Members of each `choice` block, by where the block starts (`file:line`).
    pub choices: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Default)]
pub struct SymbolDef {
    pub file: String,
    pub line: usize,
    /// Every dependency expression that must hold, as written.
    pub depends: Vec<String>,
    pub ranges: Vec<String>,
    /// The `choice` block it belongs to (`file:line`), if any.
    pub choice: Option<String>,
}

impl KconfigIndex {
    /// Reads every Kconfig file of the tree that matters for `srcarch` (other arches'
    /// `arch/*/` folders are skipped).
    pub fn scan(srctree: &Path, srcarch: &str) -> KconfigIndex {
        let mut index = KconfigIndex::default();
        let mut stack = vec![srctree.to_owned()];
        while let Some(dir) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in rd.filter_map(Result::ok) {
                let p = e.path();
                let name = e.file_name().to_string_lossy().into_owned();
                if p.is_dir() {
                    let rel = p.strip_prefix(srctree).unwrap_or(&p);
                    let skip_arch = rel.parent() == Some(Path::new("arch")) && name != srcarch;
                    if !skip_arch
                        && !name.starts_with('.')
                        && name != "Documentation"
                        && name != "tools"
                    {
                        stack.push(p);
                    }
                } else if name.starts_with("Kconfig") {
                    if let Ok(text) = std::fs::read_to_string(&p) {
                        let rel = p
                            .strip_prefix(srctree)
                            .unwrap_or(&p)
                            .to_string_lossy()
                            .into_owned();
                        index.add_file(&rel, &text);
                    }
                }
            }
        }
        index
    }

    /// Indexes one Kconfig file's text.
    pub fn add_file(&mut self, file: &str, text: &str) {
        // Dependencies of the blocks we are inside: `if EXPR`, `menu` + `depends on`, `choice`.
        let mut blocks: Vec<(&'static str, Vec<String>)> = Vec::new();
        // Where each open choice block starts, innermost last.
        let mut choice_at: Vec<String> = Vec::new();
        // The entry whose attributes we are reading.
        enum Entry {
            None,
            Symbol(String, SymbolDef),
            Menu,
            Choice,
        }
        let mut cur = Entry::None;
        let finish = |cur: &mut Entry, defs: &mut BTreeMap<String, Vec<SymbolDef>>| {
            if let Entry::Symbol(name, def) = std::mem::replace(cur, Entry::None) {
                defs.entry(name).or_default().push(def);
            }
        };
        let mut lines = text.lines().enumerate().peekable();
        while let Some((i, raw)) = lines.next() {
            // Join backslash continuations.
            let mut line = raw.trim().to_owned();
            while line.ends_with('\\') {
                line.pop();
                match lines.next() {
                    Some((_, next)) => line.push_str(next.trim()),
                    None => break,
                }
            }
            let line = line.split(" #").next().unwrap_or("").trim().to_owned();
            let (word, rest) = line
                .split_once(char::is_whitespace)
                .unwrap_or((line.as_str(), ""));
            let rest = rest.trim();
            match word {
                "config" | "menuconfig" => {
                    finish(&mut cur, &mut self.defs);
                    let inherited = blocks.iter().flat_map(|(_, d)| d.clone()).collect();
                    let choice = (blocks.last().map(|(k, _)| *k) == Some("choice"))
                        .then(|| choice_at.last().cloned())
                        .flatten();
                    if let Some(c) = &choice {
                        self.choices
                            .entry(c.clone())
                            .or_default()
                            .push(rest.to_owned());
                    }
                    cur = Entry::Symbol(
                        rest.to_owned(),
                        SymbolDef {
                            file: file.to_owned(),
                            line: i + 1,
                            depends: inherited,
                            ranges: Vec::new(),
                            choice,
                        },
                    );
                }
                "if" => {
                    finish(&mut cur, &mut self.defs);
                    blocks.push(("if", vec![rest.to_owned()]));
                }
                "endif" => {
                    finish(&mut cur, &mut self.defs);
                    pop_block(&mut blocks, "if");
                }
                "menu" => {
                    finish(&mut cur, &mut self.defs);
                    blocks.push(("menu", Vec::new()));
                    cur = Entry::Menu;
                }
                "endmenu" => {
                    finish(&mut cur, &mut self.defs);
                    pop_block(&mut blocks, "menu");
                }
                "choice" => {
                    finish(&mut cur, &mut self.defs);
                    blocks.push(("choice", Vec::new()));
                    choice_at.push(format!("{file}:{}", i + 1));
                    cur = Entry::Choice;
                }
                "endchoice" => {
                    finish(&mut cur, &mut self.defs);
                    pop_block(&mut blocks, "choice");
                    choice_at.pop();
                }
                "depends" => {
                    let expr = rest
                        .strip_prefix("on")
                        .map(str::trim)
                        .unwrap_or(rest)
                        .to_owned();
                    match &mut cur {
                        Entry::Symbol(_, def) => def.depends.push(expr),
                        Entry::Menu | Entry::Choice => {
                            if let Some((_, deps)) = blocks.last_mut() {
                                deps.push(expr);
                            }
                        }
                        Entry::None => {}
                    }
                }
                "range" => {
                    if let Entry::Symbol(_, def) = &mut cur {
                        def.ranges.push(rest.to_owned());
                    }
                }
                "source" | "comment" | "mainmenu" => finish(&mut cur, &mut self.defs),
                _ => {}
            }
        }
        finish(&mut cur, &mut self.defs);
    }

    /// Why `option` does not have the requested value, given the final config.
    pub fn explain(&self, option: &str, config: &BTreeMap<String, String>) -> String {
        let Some(defs) = self.defs.get(option) else {
            return format!("no Kconfig in this tree defines {option}: check the spelling, or whether this kernel version has it");
        };
        let mut unmet = Vec::new();
        let mut all = Vec::new();
        for def in defs {
            for dep in &def.depends {
                let expr = Expr::parse(dep);
                all.push(dep.clone());
                if expr.as_ref().map(|e| e.eval(config)) == Some(0) {
                    let culprits = expr.map(|e| e.culprits(config)).unwrap_or_default();
                    unmet.push(format!(
                        "it depends on {dep} ({}:{}), and {}",
                        def.file,
                        def.line,
                        if culprits.is_empty() {
                            "that is false".to_owned()
                        } else {
                            culprits.join(", ")
                        }
                    ));
                }
            }
        }
        if !unmet.is_empty() {
            unmet.dedup();
            return unmet.join("; ");
        }
        // A choice member loses to the member the base config already chose.
        for def in defs {
            let Some(choice) = &def.choice else { continue };
            let chosen: Vec<&String> = self
                .choices
                .get(choice)
                .into_iter()
                .flatten()
                .filter(|m| *m != option && config.get(*m).is_some_and(|v| v == "y"))
                .collect();
            if let Some(winner) = chosen.first() {
                return format!(
                    "it is one of a choice ({choice}) in which {winner}=y was kept; add `# CONFIG_{winner} is not set` to the fragment"
                );
            }
        }
        let ranges: Vec<&String> = defs.iter().flat_map(|d| &d.ranges).collect();
        if !ranges.is_empty() {
            return format!(
                "its dependencies hold; check its allowed range ({})",
                ranges
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let where_ = defs
            .iter()
            .map(|d| format!("{}:{}", d.file, d.line))
            .collect::<Vec<_>>()
            .join(", ");
        if all.is_empty() {
            format!("it has no `depends on` ({where_}); another option may select or override it, or it sits in a choice: check with `make menuconfig`")
        } else {
            format!("its dependencies ({}) hold ({where_}); another option may override it, or it sits in a choice: check with `make menuconfig`", all.join("; "))
        }
    }
}

fn pop_block(blocks: &mut Vec<(&'static str, Vec<String>)>, kind: &str) {
    if let Some(pos) = blocks.iter().rposition(|(k, _)| *k == kind) {
        blocks.truncate(pos);
    }
}

/// The longest expression [`Expr::parse`] reads. The parser, `eval` and `culprits` recurse
/// once per nesting level or operand, so a text of 50 000 `(` overflowed the stack; no
/// `depends on` line in Linux 6.12 is even 250 characters long.
pub const MAX_EXPR_TOKENS: usize = 1000;

/// A Kconfig dependency expression, evaluated in tristate logic (n=0, m=1, y=2).
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Sym(String),
    Const(String),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Cmp(String, String, String),
}

impl Expr {
    /// None when `text` is not an expression, or is longer than [`MAX_EXPR_TOKENS`].
    pub fn parse(text: &str) -> Option<Expr> {
        let tokens = tokenize(text);
        if tokens.len() > MAX_EXPR_TOKENS {
            return None;
        }
        let mut pos = 0;
        let e = parse_or(&tokens, &mut pos)?;
        (pos == tokens.len()).then_some(e)
    }

    fn value_of(atom: &str, config: &BTreeMap<String, String>) -> String {
        if atom.starts_with('"') {
            return atom.trim_matches('"').to_owned();
        }
        match atom {
            "y" | "m" | "n" => atom.to_owned(),
            _ if atom.chars().all(|c| c.is_ascii_digit()) => atom.to_owned(),
            _ => config.get(atom).cloned().unwrap_or_else(|| "n".to_owned()),
        }
    }

    pub fn eval(&self, config: &BTreeMap<String, String>) -> u8 {
        match self {
            Expr::Sym(s) | Expr::Const(s) => match Expr::value_of(s, config).as_str() {
                "y" => 2,
                "m" => 1,
                _ => 0,
            },
            Expr::Not(e) => 2 - e.eval(config),
            Expr::And(a, b) => a.eval(config).min(b.eval(config)),
            Expr::Or(a, b) => a.eval(config).max(b.eval(config)),
            Expr::Cmp(a, op, b) => {
                let (x, y) = (Expr::value_of(a, config), Expr::value_of(b, config));
                let eq = x == y;
                let ord = match (x.parse::<i64>(), y.parse::<i64>()) {
                    (Ok(i), Ok(j)) => i.cmp(&j),
                    _ => x.cmp(&y),
                };
                let holds = match op.as_str() {
                    "=" => eq,
                    "!=" => !eq,
                    "<" => ord.is_lt(),
                    "<=" => ord.is_le(),
                    ">" => ord.is_gt(),
                    ">=" => ord.is_ge(),
                    _ => false,
                };
                if holds {
                    2
                } else {
                    0
                }
            }
        }
    }

    /// The leaves that make this expression false, as `SYM=value`.
    pub fn culprits(&self, config: &BTreeMap<String, String>) -> Vec<String> {
        let mut out = Vec::new();
        self.collect_culprits(config, false, &mut out);
        out.dedup();
        out
    }

    fn collect_culprits(
        &self,
        config: &BTreeMap<String, String>,
        negated: bool,
        out: &mut Vec<String>,
    ) {
        let show = |s: &str| format!("{s}={}", Expr::value_of(s, config));
        match self {
            Expr::Sym(s) => {
                let v = self.eval(config);
                if (!negated && v == 0) || (negated && v > 0) {
                    out.push(show(s));
                }
            }
            Expr::Const(_) => {}
            Expr::Not(e) => e.collect_culprits(config, !negated, out),
            Expr::And(a, b) | Expr::Or(a, b) => {
                // Only the operands that pull the result the wrong way are to blame.
                for side in [a, b] {
                    let v = side.eval(config);
                    if (!negated && v == 0) || (negated && v > 0) {
                        side.collect_culprits(config, negated, out);
                    }
                }
            }
            Expr::Cmp(a, op, b) => {
                let holds = self.eval(config) > 0;
                if holds == negated {
                    let side = |x: &str| {
                        if x.starts_with('"') || x.chars().all(|c| c.is_ascii_digit()) {
                            x.to_owned()
                        } else {
                            show(x)
                        }
                    };
                    out.push(format!("{} {op} {} does not hold", side(a), side(b)));
                }
            }
        }
    }
}

fn tokenize(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' {
            let start = i;
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += 1;
            }
            i += 1;
            out.push(chars[start..i.min(chars.len())].iter().collect());
        } else if "&|!=<>()".contains(c) {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            if ["&&", "||", "!=", "<=", ">="].contains(&two.as_str()) {
                out.push(two);
                i += 2;
            } else {
                out.push(c.to_string());
                i += 1;
            }
        } else {
            let start = i;
            while i < chars.len() && !chars[i].is_whitespace() && !"&|!=<>()\"".contains(chars[i]) {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        }
    }
    out
}

fn parse_or(t: &[String], pos: &mut usize) -> Option<Expr> {
    let mut left = parse_and(t, pos)?;
    while t.get(*pos).is_some_and(|s| s == "||") {
        *pos += 1;
        left = Expr::Or(Box::new(left), Box::new(parse_and(t, pos)?));
    }
    Some(left)
}

fn parse_and(t: &[String], pos: &mut usize) -> Option<Expr> {
    let mut left = parse_unary(t, pos)?;
    while t.get(*pos).is_some_and(|s| s == "&&") {
        *pos += 1;
        left = Expr::And(Box::new(left), Box::new(parse_unary(t, pos)?));
    }
    Some(left)
}

fn parse_unary(t: &[String], pos: &mut usize) -> Option<Expr> {
    let tok = t.get(*pos)?.clone();
    *pos += 1;
    match tok.as_str() {
        "!" => Some(Expr::Not(Box::new(parse_unary(t, pos)?))),
        "(" => {
            let e = parse_or(t, pos)?;
            (t.get(*pos)? == ")").then(|| *pos += 1)?;
            Some(e)
        }
        _ => {
            if let Some(op) = t
                .get(*pos)
                .filter(|o| ["=", "!=", "<", "<=", ">", ">="].contains(&o.as_str()))
            {
                let op = op.clone();
                let rhs = t.get(*pos + 1)?.clone();
                *pos += 2;
                return Some(Expr::Cmp(tok, op, rhs));
            }
            if ["y", "m", "n"].contains(&tok.as_str()) || tok.starts_with('"') {
                Some(Expr::Const(tok))
            } else {
                Some(Expr::Sym(tok))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frag(name: &str, text: &str) -> Fragment {
        Fragment {
            name: name.into(),
            entries: parse_config_text(text, Path::new(name)).expect("parses"),
        }
    }

    #[test]
    fn a_fragment_is_found_by_name_or_by_path_with_or_without_its_extension() {
        let configs = tempfile::tempdir().expect("tempdir");
        let elsewhere = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            configs.path().join("lockdep.config"),
            "CONFIG_PROVE_LOCKING=y\n",
        )
        .expect("write");
        let rt = elsewhere.path().join("rt-only.config");
        std::fs::write(&rt, "CONFIG_PREEMPT_RT=y\n").expect("write");
        for name in ["lockdep", "lockdep.config"] {
            let (f, _) = load_fragment(configs.path(), name).expect(name);
            assert_eq!(f.name, "lockdep");
            assert_eq!(f.entries, vec![("PROVE_LOCKING".into(), "y".into())]);
        }
        let with_ext = rt.to_str().expect("utf-8").to_owned();
        let without = with_ext.trim_end_matches(".config").to_owned();
        for name in [&with_ext, &without] {
            let (f, _) = load_fragment(configs.path(), name).expect(name);
            assert_eq!(f.name, "rt-only", "{name}");
            assert_eq!(f.entries, vec![("PREEMPT_RT".into(), "y".into())]);
        }
        // A missing one names the path it looked for, once with its extension.
        let missing = format!("{}/nope.config", elsewhere.path().display());
        let err = load_fragment(configs.path(), &missing).expect_err("missing");
        assert!(
            err.to_string().contains("nope.config")
                && !err.to_string().contains("nope.config.config"),
            "{err}"
        );
    }

    #[test]
    fn fragments_parse_and_reject_junk() {
        let f = frag("a", "# comment\nCONFIG_SMP=y\n# CONFIG_SLUB_TINY is not set\nCONFIG_NR_CPUS=8\nCONFIG_CMDLINE=\"x y\"\n");
        assert_eq!(
            f.entries,
            vec![
                ("SMP".into(), "y".into()),
                ("SLUB_TINY".into(), "n".into()),
                ("NR_CPUS".into(), "8".into()),
                ("CMDLINE".into(), "\"x y\"".into()),
            ]
        );
        let err =
            parse_config_text("CONFIG_SMP=y\nSMP=y\n", Path::new("bad.config")).expect_err("junk");
        assert!(err.to_string().contains("bad.config:2"), "{err}");
    }

    #[test]
    fn later_fragments_win_and_overrides_are_reported() {
        let req = merge(&[
            frag("common", "CONFIG_A=y\nCONFIG_B=y\n"),
            frag("kasan", "# CONFIG_B is not set\nCONFIG_C=m\n"),
        ]);
        assert_eq!(req.options["B"], ("n".to_owned(), "kasan".to_owned()));
        assert_eq!(req.options["A"].0, "y");
        assert_eq!(req.overrides.len(), 1);
        assert!(req.overrides[0].contains("CONFIG_B=y from common"));
    }

    #[test]
    fn requests_replace_base_lines_and_append_the_rest() {
        let req = merge(&[frag("f", "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_D=y\n")]);
        let out = apply_to_base("# CONFIG_A is not set\nCONFIG_B=y\nCONFIG_C=y\n", &req);
        assert_eq!(
            out,
            "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=y\nCONFIG_D=y\n"
        );
    }

    #[test]
    fn verification_names_dropped_option_value_and_dependency() {
        let mut index = KconfigIndex::default();
        index.add_file(
            "kernel/Kconfig.preempt",
            "config PREEMPT_RT\n\tbool \"Fully Preemptible Kernel (Real-Time)\"\n\tdepends on EXPERT && ARCH_SUPPORTS_RT\n\tselect PREEMPTION\n",
        );
        let req = merge(&[frag("preempt-rt", "CONFIG_PREEMPT_RT=y\nCONFIG_SMP=y\n")]);
        let final_cfg = "CONFIG_SMP=y\nCONFIG_ARCH_SUPPORTS_RT=y\n# CONFIG_EXPERT is not set\n";
        let err = verify(&req, final_cfg, |o, c| index.explain(o, c)).expect_err("dropped");
        let msg = err.to_string();
        assert!(msg.contains("PREEMPT_RT=y was dropped"), "{msg}");
        assert!(
            msg.contains("it depends on EXPERT && ARCH_SUPPORTS_RT"),
            "{msg}"
        );
        assert!(msg.contains("EXPERT=n"), "{msg}");
        assert!(
            !msg.contains("ARCH_SUPPORTS_RT=y"),
            "only the unmet side is blamed: {msg}"
        );
        assert!(msg.contains("preempt-rt"), "{msg}");
        let ok_cfg = "CONFIG_SMP=y\nCONFIG_PREEMPT_RT=y\n";
        assert!(verify(&req, ok_cfg, |o, c| index.explain(o, c)).is_ok());
    }

    #[test]
    fn if_blocks_and_menus_count_as_dependencies() {
        let mut index = KconfigIndex::default();
        index.add_file(
            "drivers/virtio/Kconfig",
            "menuconfig VIRTIO_MENU\n\tbool \"Virtio drivers\"\n\tdefault y\n\nif VIRTIO_MENU\n\nconfig VIRTIO_PCI\n\ttristate \"PCI driver for virtio devices\"\n\tdepends on PCI\n\nendif # VIRTIO_MENU\n\nmenu \"Other\"\n\tdepends on NET\nconfig X\n\tbool\nendmenu\nconfig Y\n\tbool\n",
        );
        let cfg = config_map("CONFIG_PCI=y\n# CONFIG_VIRTIO_MENU is not set\n");
        let why = index.explain("VIRTIO_PCI", &cfg);
        assert!(
            why.contains("depends on VIRTIO_MENU") && why.contains("VIRTIO_MENU=n"),
            "{why}"
        );
        assert!(!why.contains("PCI=y"), "{why}");
        assert!(index.explain("X", &cfg).contains("NET=n"));
        assert!(index.defs["Y"][0].depends.is_empty(), "menu scope ended");
        assert!(index.explain("NO_SUCH_THING", &cfg).contains("no Kconfig"));
    }

    #[test]
    fn a_choice_member_that_lost_names_the_winner() {
        let mut index = KconfigIndex::default();
        index.add_file(
            "arch/x86/Kconfig.debug",
            "choice\n\tprompt \"Choose kernel unwinder\"\n\tdefault UNWINDER_ORC if X86_64\n\nconfig UNWINDER_ORC\n\tbool \"ORC unwinder\"\n\tdepends on X86_64\n\nconfig UNWINDER_GUESS\n\tbool \"Guess unwinder\"\n\nendchoice\n\nconfig AFTER\n\tbool\n",
        );
        let cfg = config_map("CONFIG_X86_64=y\nCONFIG_UNWINDER_GUESS=y\n");
        let why = index.explain("UNWINDER_ORC", &cfg);
        assert!(why.contains("UNWINDER_GUESS=y was kept"), "{why}");
        assert!(why.contains("# CONFIG_UNWINDER_GUESS is not set"), "{why}");
        assert!(index.defs["AFTER"][0].choice.is_none(), "the choice ended");
    }

    #[test]
    fn expressions_evaluate_in_tristate_logic() {
        let cfg = config_map("CONFIG_A=y\nCONFIG_M=m\nCONFIG_N=8\n");
        let e = |s: &str| Expr::parse(s).expect("parses").eval(&cfg);
        assert_eq!(e("A && M"), 1);
        assert_eq!(e("A && !B"), 2);
        assert_eq!(e("B || M"), 1);
        assert_eq!(e("(A || B) && !(M = n)"), 2);
        assert_eq!(e("N >= 4 && N != 9"), 2);
        assert_eq!(e("X86 && !COMPILE_TEST"), 0);
        let c = Expr::parse("!A && B").expect("parses").culprits(&cfg);
        assert_eq!(c, vec!["A=y".to_owned(), "B=n".to_owned()]);
        assert!(Expr::parse("A &&").is_none());
    }

    #[test]
    fn expressions_too_long_to_be_kconfig_are_not_parsed() {
        // Found writing fuzz_expressions_parse_or_fail: 50 000 nested parentheses or `!`s
        // overflowed the stack of the recursive parser (an abort, not a panic), and a Kconfig
        // file is in the tree a patch under test may change.
        let deep = format!("{}A{}", "(".repeat(50_000), ")".repeat(50_000));
        assert_eq!(Expr::parse(&deep), None);
        assert_eq!(Expr::parse(&format!("{}A", "!".repeat(50_000))), None);
        assert_eq!(Expr::parse(&"A && ".repeat(50_000)), None);
        // Up to the limit, the deepest nesting still parses and evaluates.
        let half = MAX_EXPR_TOKENS / 2 - 1;
        let deepest = format!("{}A{}", "(".repeat(half), ")".repeat(half));
        let cfg = BTreeMap::from([("A".to_owned(), "y".to_owned())]);
        assert_eq!(Expr::parse(&deepest).map(|e| e.eval(&cfg)), Some(2));
        let nots = format!("{}A", "!".repeat(MAX_EXPR_TOKENS - 1));
        assert_eq!(Expr::parse(&nots).map(|e| e.eval(&cfg)), Some(0));
        let chain = vec!["A"; MAX_EXPR_TOKENS / 2].join(" && ");
        assert_eq!(Expr::parse(&chain).map(|e| e.culprits(&cfg).len()), Some(0));
    }

    #[test]
    fn a_not_set_line_with_a_bad_name_is_a_comment() {
        // Seen writing fuzz_config_text_parses_or_fails: `# CONFIG_ is not set` requested an
        // option with an empty name, `# CONFIG_A B is not set` one named "A B".
        let entries = parse_config_text(
            "# CONFIG_ is not set\n# CONFIG_A B is not set\n# CONFIG_C is not set\n",
            Path::new("f.config"),
        )
        .expect("comments");
        assert_eq!(entries, [("C".to_owned(), "n".to_owned())]);
    }

    /// Tokens of Kconfig expressions, to build expressions that mostly parse.
    const EXPR_TOKENS: &[&str] = &[
        "A", "B", "FOO_BAR", "y", "m", "n", "\"s\"", "\"", "0", "10", "-1", "(", ")", "!", "&&",
        "||", "=", "!=", "<", "<=", ">", ">=", "&", "|",
    ];

    proptest! {

        #[test]
        fn fuzz_config_text_parses_or_fails(text in "\\PC*", lines in proptest::collection::vec(prop_oneof![
            Just("CONFIG_A=y".to_owned()),
            Just("# CONFIG_B is not set".to_owned()),
            "CONFIG_[A-Z_]{0,4}=\\PC{0,6}",
            "# CONFIG_\\PC{0,8} is not set",
            "\\PC{0,12}",
        ], 0..8)) {
            for text in [text, lines.join("\n")] {
                if let Ok(entries) = parse_config_text(&text, Path::new("fuzz.config")) {
                    for (name, value) in &entries {
                        prop_assert!(is_symbol(name), "{:?}", name);
                        prop_assert!(!value.is_empty());
                    }
                }
            }
        }

        #[test]
        fn fuzz_expressions_parse_or_fail(
            text in "\\PC*",
            tokens in proptest::collection::vec(0..EXPR_TOKENS.len(), 0..24),
            a in prop_oneof![Just("y"), Just("m"), Just("n"), Just("3"), Just("")],
        ) {
            let cfg = BTreeMap::from([("A".to_owned(), a.to_owned()), ("B".to_owned(), "m".to_owned())]);
            let soup = tokens.iter().map(|&t| EXPR_TOKENS[t]).collect::<Vec<_>>().join(" ");
            for text in [text, soup] {
                if let Some(e) = Expr::parse(&text) {
                    prop_assert!(e.eval(&cfg) <= 2);
                    let _ = e.culprits(&cfg);
                }
            }
        }
    }
}
