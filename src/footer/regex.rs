//! Rewriting the knowledge base's Rust regular expressions for Postfix's `pcre:` and
//! `regexp:` (POSIX extended) tables.
//!
//! The pattern is parsed with `regex-syntax` and printed again in the target dialect, so
//! escapes and classes come out right instead of being copied through by luck. What a
//! dialect cannot say (Unicode classes, non-ASCII text, class set operations, inline
//! flags POSIX lacks ...) makes the rule unconvertible, with the reason.
//!
//! Only *whether* a pattern matches matters here (footers use no captures), so groups
//! print as non-capturing and laziness is dropped where the dialect lacks it.

use regex_syntax::ast::{
    self, Assertion, AssertionKind, Ast, ClassAsciiKind, ClassBracketed, ClassPerl, ClassPerlKind, ClassSet,
    ClassSetItem, Flag, Flags, FlagsItemKind, GroupKind, Literal, RepetitionKind, RepetitionRange,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Perl-compatible (Postfix `pcre:`); to be matched with the `s` flag toggled off, so
    /// that `.` does not match a newline, as in Rust.
    Pcre,
    /// POSIX extended (Postfix `regexp:`). `\b`, `\B`, `\<` and `\>` are emitted as the
    /// GNU extensions that glibc (and so Debian's Postfix) understands.
    Posix,
}

/// A pattern in the target dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    pub pattern: String,
    /// Uses GNU extensions to POSIX (word boundaries).
    pub gnu: bool,
}

/// Convert a Rust regex (matched case-insensitively) to `dialect`, or say why not.
pub fn convert(pattern: &str, dialect: Dialect) -> Result<Converted, String> {
    let ast = ast::parse::Parser::new().parse(pattern).map_err(|e| format!("does not parse: {}", e.kind()))?;
    let mut w = Writer { d: dialect, out: String::new(), gnu: false };
    w.ast(&ast)?;
    Ok(Converted { pattern: w.out, gnu: w.gnu })
}

struct Writer {
    d: Dialect,
    out: String,
    gnu: bool,
}

type Res = Result<(), String>;

impl Writer {
    fn ast(&mut self, ast: &Ast) -> Res {
        match ast {
            Ast::Empty(_) => Ok(()),
            Ast::Flags(f) => self.flags(&f.flags, None),
            Ast::Literal(l) => self.literal(l),
            Ast::Dot(_) => {
                self.out.push('.');
                Ok(())
            }
            Ast::Assertion(a) => self.assertion(a),
            Ast::ClassUnicode(_) => Err("Unicode class".into()),
            Ast::ClassPerl(p) => {
                self.perl(p);
                Ok(())
            }
            Ast::ClassBracketed(b) => self.bracketed(b),
            Ast::Repetition(r) => {
                self.ast(&r.ast)?;
                self.repetition(&r.op.kind, r.greedy)
            }
            Ast::Group(g) => {
                self.out.push_str(if self.d == Dialect::Pcre { "(?" } else { "(" });
                match &g.kind {
                    GroupKind::NonCapturing(f) => self.flags(f, Some(':'))?,
                    _ if self.d == Dialect::Pcre => self.out.push(':'),
                    _ => {}
                }
                self.ast(&g.ast)?;
                self.out.push(')');
                Ok(())
            }
            Ast::Alternation(a) => {
                for (i, branch) in a.asts.iter().enumerate() {
                    if self.d == Dialect::Posix && matches!(branch, Ast::Empty(_)) {
                        return Err("empty alternative".into());
                    }
                    if i > 0 {
                        self.out.push('|');
                    }
                    self.ast(branch)?;
                }
                Ok(())
            }
            Ast::Concat(c) => c.asts.iter().try_for_each(|a| self.ast(a)),
        }
    }

    /// Inline flags: `(?i)` alone, or the flags of a `(?i:...)` group (`then` = ':').
    /// PCRE keeps i, m and s; x, U and u change nothing once the pattern is reprinted
    /// (whitespace is gone, greed and Unicode mode do not change whether an ASCII reply
    /// matches). POSIX has no inline flags, so only the harmless ones pass there.
    fn flags(&mut self, flags: &Flags, then: Option<char>) -> Res {
        let mut kept = String::new();
        let mut negated = false;
        for item in &flags.items {
            match item.kind {
                FlagsItemKind::Negation => {
                    negated = true;
                    kept.push('-');
                }
                FlagsItemKind::Flag(f) => match (self.d, f) {
                    (_, Flag::CRLF) => return Err("CRLF mode flag".into()),
                    (_, Flag::IgnoreWhitespace | Flag::SwapGreed | Flag::Unicode) => {}
                    (Dialect::Pcre, Flag::CaseInsensitive) => kept.push('i'),
                    (Dialect::Pcre, Flag::MultiLine) => kept.push('m'),
                    (Dialect::Pcre, Flag::DotMatchesNewLine) => kept.push('s'),
                    (Dialect::Posix, Flag::CaseInsensitive) if negated => return Err("case-sensitive part".into()),
                    (Dialect::Posix, Flag::MultiLine) if !negated => return Err("multi-line flag".into()),
                    // POSIX '.' matches newlines anyway; Rust's does with (?s).
                    (Dialect::Posix, _) => {}
                },
            }
        }
        let kept = kept.trim_end_matches('-');
        match (self.d, then) {
            (Dialect::Pcre, None) if !kept.is_empty() => self.out.push_str(&format!("(?{kept})")),
            (Dialect::Pcre, Some(c)) => {
                self.out.push_str(kept);
                self.out.push(c);
            }
            _ => {}
        }
        Ok(())
    }

    fn literal(&mut self, l: &Literal) -> Res {
        let c = ascii(l.c)?;
        match self.d {
            Dialect::Pcre if c.is_ascii_alphanumeric() || c == ' ' => self.out.push(c),
            Dialect::Pcre if c.is_ascii_graphic() => {
                self.out.push('\\');
                self.out.push(c);
            }
            Dialect::Pcre => self.out.push_str(&format!("\\x{:02x}", c as u32)),
            Dialect::Posix if c.is_ascii_control() => return Err("control character".into()),
            Dialect::Posix => {
                if ".[]()*+?{}|^$\\".contains(c) {
                    self.out.push('\\');
                }
                self.out.push(c);
            }
        }
        Ok(())
    }

    fn assertion(&mut self, a: &Assertion) -> Res {
        use AssertionKind::*;
        let pcre = self.d == Dialect::Pcre;
        let s = match a.kind {
            StartLine => "^",
            EndLine => "$",
            StartText if pcre => "\\A",
            StartText => "^",
            EndText if pcre => "\\z",
            EndText => "$",
            WordBoundary => "\\b",
            NotWordBoundary => "\\B",
            WordBoundaryStart | WordBoundaryStartAngle if pcre => "\\b(?=\\w)",
            WordBoundaryStart | WordBoundaryStartAngle => "\\<",
            WordBoundaryEnd | WordBoundaryEndAngle if pcre => "\\b(?<=\\w)",
            WordBoundaryEnd | WordBoundaryEndAngle => "\\>",
            WordBoundaryStartHalf if pcre => "(?<!\\w)",
            WordBoundaryEndHalf if pcre => "(?!\\w)",
            WordBoundaryStartHalf | WordBoundaryEndHalf => return Err("half word boundary".into()),
        };
        if !pcre && s.starts_with('\\') {
            self.gnu = true;
        }
        self.out.push_str(s);
        Ok(())
    }

    fn perl(&mut self, p: &ClassPerl) {
        if self.d == Dialect::Pcre {
            self.out.push_str(pcre_perl(p));
        } else {
            let negated = if p.negated { "^" } else { "" };
            self.out.push_str(&format!("[{negated}{}]", posix_perl(&p.kind)));
        }
    }

    fn repetition(&mut self, kind: &RepetitionKind, greedy: bool) -> Res {
        let op = match kind {
            RepetitionKind::ZeroOrOne => "?".to_string(),
            RepetitionKind::ZeroOrMore => "*".to_string(),
            RepetitionKind::OneOrMore => "+".to_string(),
            RepetitionKind::Range(r) => {
                let (lo, hi) = match *r {
                    RepetitionRange::Exactly(n) => (n, Some(n)),
                    RepetitionRange::AtLeast(n) => (n, None),
                    RepetitionRange::Bounded(a, b) => (a, Some(b)),
                };
                // RE_DUP_MAX is 255 in POSIX; PCRE allows 65535.
                let max = if self.d == Dialect::Pcre { 65_535 } else { 255 };
                if lo > max || hi.is_some_and(|h| h > max) {
                    return Err("repetition count too large".into());
                }
                match hi {
                    Some(m) if m == lo => format!("{{{lo}}}"),
                    Some(m) => format!("{{{lo},{m}}}"),
                    None => format!("{{{lo},}}"),
                }
            }
        };
        self.out.push_str(&op);
        if !greedy && self.d == Dialect::Pcre {
            self.out.push('?');
        }
        Ok(())
    }

    fn bracketed(&mut self, b: &ClassBracketed) -> Res {
        let mut items = Vec::new();
        flatten(&b.kind, &mut items)?;
        let body = match self.d {
            Dialect::Pcre => pcre_class_body(&items)?,
            Dialect::Posix => posix_class_body(&items)?,
        };
        self.out.push('[');
        if b.negated {
            self.out.push('^');
        }
        self.out.push_str(&body);
        self.out.push(']');
        Ok(())
    }
}

fn ascii(c: char) -> Result<char, String> {
    if c.is_ascii() {
        Ok(c)
    } else {
        Err(format!("non-ASCII character {c:?}"))
    }
}

/// The items of a class that is a plain union (no set operations, no negated nesting).
fn flatten<'a>(set: &'a ClassSet, items: &mut Vec<&'a ClassSetItem>) -> Res {
    match set {
        ClassSet::BinaryOp(_) => Err("class set operation".into()),
        ClassSet::Item(item) => flatten_item(item, items),
    }
}

fn flatten_item<'a>(item: &'a ClassSetItem, items: &mut Vec<&'a ClassSetItem>) -> Res {
    match item {
        ClassSetItem::Union(u) => u.items.iter().try_for_each(|i| flatten_item(i, items)),
        ClassSetItem::Bracketed(b) if !b.negated => flatten(&b.kind, items),
        ClassSetItem::Bracketed(_) => Err("negated class inside a class".into()),
        ClassSetItem::Unicode(_) => Err("Unicode class".into()),
        ClassSetItem::Empty(_) => Ok(()),
        other => {
            items.push(other);
            Ok(())
        }
    }
}

fn pcre_perl(p: &ClassPerl) -> &'static str {
    match (&p.kind, p.negated) {
        (ClassPerlKind::Digit, false) => "\\d",
        (ClassPerlKind::Digit, true) => "\\D",
        (ClassPerlKind::Space, false) => "\\s",
        (ClassPerlKind::Space, true) => "\\S",
        (ClassPerlKind::Word, false) => "\\w",
        (ClassPerlKind::Word, true) => "\\W",
    }
}

fn posix_perl(kind: &ClassPerlKind) -> &'static str {
    match kind {
        ClassPerlKind::Digit => "[:digit:]",
        ClassPerlKind::Space => "[:space:]",
        ClassPerlKind::Word => "[:alnum:]_",
    }
}

fn ascii_class_name(kind: &ClassAsciiKind) -> &'static str {
    use ClassAsciiKind::*;
    match kind {
        Alnum => "alnum",
        Alpha => "alpha",
        Ascii => "ascii",
        Blank => "blank",
        Cntrl => "cntrl",
        Digit => "digit",
        Graph => "graph",
        Lower => "lower",
        Print => "print",
        Punct => "punct",
        Space => "space",
        Upper => "upper",
        Word => "word",
        Xdigit => "xdigit",
    }
}

/// PCRE class body: every non-alphanumeric literal escaped.
fn pcre_class_body(items: &[&ClassSetItem]) -> Result<String, String> {
    let lit = |c: char| -> Result<String, String> {
        let c = ascii(c)?;
        Ok(if c.is_ascii_alphanumeric() {
            c.to_string()
        } else if c.is_ascii_graphic() || c == ' ' {
            format!("\\{c}")
        } else {
            format!("\\x{:02x}", c as u32)
        })
    };
    let mut body = String::new();
    for item in items {
        match item {
            ClassSetItem::Literal(l) => body.push_str(&lit(l.c)?),
            ClassSetItem::Range(r) => body.push_str(&format!("{}-{}", lit(r.start.c)?, lit(r.end.c)?)),
            ClassSetItem::Ascii(a) => {
                let negated = if a.negated { "^" } else { "" };
                body.push_str(&format!("[:{negated}{}:]", ascii_class_name(&a.kind)));
            }
            ClassSetItem::Perl(p) => body.push_str(pcre_perl(p)),
            _ => return Err("unsupported class item".into()),
        }
    }
    Ok(body)
}

/// POSIX bracket body. Brackets have no escapes, so placement does the work: `]` goes
/// first, `^` anywhere but first, `[` and `-` last; negated inner classes cannot be said.
fn posix_class_body(items: &[&ClassSetItem]) -> Result<String, String> {
    let (mut close, mut caret, mut open, mut dash) = (false, false, false, false);
    let mut middle = String::new();
    for item in items {
        match item {
            ClassSetItem::Literal(l) => match ascii(l.c)? {
                ']' => close = true,
                '^' => caret = true,
                '[' => open = true,
                '-' => dash = true,
                c if c.is_ascii_control() => return Err("control character".into()),
                c => middle.push(c),
            },
            ClassSetItem::Range(r) => {
                let (a, b) = (ascii(r.start.c)?, ascii(r.end.c)?);
                let special = |c: char| "]^[-".contains(c) || c.is_ascii_control();
                if special(a) || special(b) {
                    return Err("class range with a special character".into());
                }
                middle.push_str(&format!("{a}-{b}"));
            }
            ClassSetItem::Ascii(a) if !a.negated => match a.kind {
                ClassAsciiKind::Word => middle.push_str("[:alnum:]_"),
                ClassAsciiKind::Ascii => return Err("[:ascii:] is not POSIX".into()),
                ref k => middle.push_str(&format!("[:{}:]", ascii_class_name(k))),
            },
            ClassSetItem::Perl(p) if !p.negated => middle.push_str(posix_perl(&p.kind)),
            _ => return Err("negated class inside a class".into()),
        }
    }
    let mut body = String::new();
    if close {
        body.push(']');
    }
    body.push_str(&middle);
    if caret {
        if body.is_empty() {
            return Err("class with a caret and no ordinary character".into());
        }
        body.push('^');
    }
    if open {
        body.push('[');
    }
    if dash {
        body.push('-');
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcre(p: &str) -> String {
        convert(p, Dialect::Pcre).unwrap().pattern
    }

    fn posix(p: &str) -> String {
        convert(p, Dialect::Posix).unwrap().pattern
    }

    #[test]
    fn plain_text_and_alternation() {
        let p = "relaying denied|relay(ing)? (access )?denied|not an open relay";
        assert_eq!(pcre(p), "relaying denied|relay(?:ing)? (?:access )?denied|not an open relay");
        assert_eq!(posix(p), "relaying denied|relay(ing)? (access )?denied|not an open relay");
    }

    #[test]
    fn escapes_and_classes() {
        assert_eq!(pcre(r"5\.7\.1 \d+ [a-z_./-]+ \s"), r"5\.7\.1 \d+ [a-z\_\.\/\-]+ \s");
        assert_eq!(posix(r"5\.7\.1 \d+ [a-z_./-]+ \s"), "5\\.7\\.1 [[:digit:]]+ [a-z_./-]+ [[:space:]]");
        assert_eq!(posix(r"[\]^a\[-]"), "[]a^[-]");
        assert_eq!(posix(r"[^\w.]"), "[^[:alnum:]_.]");
        assert_eq!(pcre(r"a{2,3}?x{4}"), "a{2,3}?x{4}");
        assert_eq!(posix(r"a{2,3}?x{4,}"), "a{2,3}x{4,}");
    }

    #[test]
    fn flags_and_boundaries() {
        assert_eq!(pcre(r"(?i)\bfoo(?-i:Bar)$"), r"(?i)\bfoo(?-i:Bar)$");
        let c = convert(r"\bfoo\b", Dialect::Posix).unwrap();
        assert_eq!((c.pattern.as_str(), c.gnu), (r"\bfoo\b", true));
        assert!(!convert("foo", Dialect::Posix).unwrap().gnu);
        assert_eq!(posix(r"(?x) a b # comment"), "ab");
    }

    #[test]
    fn unconvertible() {
        for (p, d) in [
            (r"\pL", Dialect::Pcre),
            ("größe", Dialect::Pcre),
            (r"[a-z&&[^aeiou]]", Dialect::Pcre),
            (r"(?-i:Foo)", Dialect::Posix),
            (r"(?m)^foo", Dialect::Posix),
            (r"[\D]", Dialect::Posix),
            (r"(a|)", Dialect::Posix),
            (r"(?R)x", Dialect::Pcre),
        ] {
            assert!(convert(p, d).is_err(), "{p} should not convert to {d:?}");
        }
    }
}
