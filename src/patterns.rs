//! Which of many patterns match a text, fast: the knowledge base's rules, the bounce
//! families' sentences.
//!
//! One overlapping `RegexSet` over all patterns must run every pattern to the end of the
//! text, and with ~200 case-insensitive patterns its lazy DFA thrashes and falls back to
//! the PikeVM (≈ 2 ms per new text); one big alternation loses the regex engine's literal
//! prefilters. Instead, a literal that every match of a pattern must begin (or end) with,
//! or failing that contain, is taken from each pattern, and one Aho-Corasick scan over the
//! text finds the few patterns whose literals occur; only those run their own regex,
//! anchored where the literal occurs when the literals begin every match.
//! Regexes are compiled on first use, so start-up pays only for the scanner, and without
//! the regex engine's own literal prefilter: the scanner has done that job, and building
//! it was more than half of each pattern's compile time.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use anyhow::{Context, Result};
use regex_automata::meta::{self, Regex};
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input};
use regex_syntax::hir::literal::{Extractor, ExtractKind, Literal, Seq};
use regex_syntax::hir::{Hir, HirKind};
use regex_syntax::ParserBuilder;
use std::ops::Range;
use std::sync::OnceLock;

/// Heap limit for compiling one pattern's NFA (the regex crate's default size limit is 10 MB).
const SIZE_LIMIT: usize = 16 << 20;

/// Literals shorter than this select too little to be worth scanning for.
const MIN_LITERAL: usize = 3;

/// Characters outside ASCII that case-insensitive matching folds ASCII letters to: the
/// Kelvin sign (k) and the long s (s). The scanner folds ASCII case only, so a text with
/// either one runs every pattern (see the test `ascii_letters_fold_only_to_kelvin_and_long_s`).
const NON_ASCII_FOLDS: [char; 2] = ['\u{212A}', '\u{17F}'];

/// What one scan of a text found (see `PatternSet::found`).
struct Found {
    /// Per pattern: worth running.
    hit: Vec<bool>,
    /// (pattern, start) of each literal of a pattern whose literals begin its matches,
    /// sorted; `None` when the text has a character the scanner cannot fold (every
    /// pattern is then searched for).
    starts: Option<Vec<(usize, usize)>>,
}

/// Patterns, each compiled on first use.
pub struct PatternSet {
    case_insensitive: bool,
    sources: Vec<String>,
    compiled: Vec<OnceLock<Option<Regex>>>,
    scanner: AhoCorasick,
    /// Pattern index of each scanner literal.
    literal_owner: Vec<usize>,
    /// Per pattern: its literals begin every match (else they end it, or there are none).
    prefixed: Vec<bool>,
    /// Patterns without a usable literal: tried on every text.
    always: Vec<usize>,
}

impl PatternSet {
    /// Check every pattern's syntax and build the scanner. Each pattern comes with a name
    /// for errors; `case_insensitive` applies to all of them.
    pub fn new<'a>(patterns: impl IntoIterator<Item = (&'a str, &'a str)>, case_insensitive: bool) -> Result<PatternSet> {
        let mut sources = Vec::new();
        let mut literals: Vec<String> = Vec::new();
        let mut literal_owner = Vec::new();
        let mut always = Vec::new();
        let mut prefixed = Vec::new();
        for (i, (name, pattern)) in patterns.into_iter().enumerate() {
            let found = required_literals(pattern, case_insensitive).with_context(|| format!("{name}: invalid pattern"))?;
            prefixed.push(matches!(found, Some((_, true))));
            match found {
                Some((lits, _)) => {
                    literal_owner.extend(std::iter::repeat_n(i, lits.len()));
                    literals.extend(lits);
                }
                None => always.push(i),
            }
            sources.push(pattern.to_string());
        }
        let scanner = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(&literals)
            .context("building the knowledge-base scanner")?;
        let compiled = sources.iter().map(|_| OnceLock::new()).collect();
        Ok(PatternSet { case_insensitive, sources, compiled, scanner, literal_owner, prefixed, always })
    }

    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// Patterns tried on every text because no literal could be taken from them.
    pub fn unfiltered(&self) -> usize {
        self.always.len()
    }

    /// Indices of the patterns that match `text`, in ascending order.
    pub fn matching(&self, text: &str) -> Vec<usize> {
        let found = self.found(text);
        (0..self.len()).filter(|&i| found.hit[i] && self.matches(i, text, &found)).collect()
    }

    /// Of the patterns that `rank` ranks (`Some`), the one ranked lowest that matches `text`:
    /// regexes run in rank order and stop at the first match, so a caller that wants the
    /// best match skips those that could only lose.
    pub fn best_match<K: Ord>(&self, text: &str, rank: impl Fn(usize) -> Option<K>) -> Option<usize> {
        let found = self.found(text);
        let mut ranked: Vec<(K, usize)> = (0..self.len()).filter(|&i| found.hit[i]).filter_map(|i| Some((rank(i)?, i))).collect();
        ranked.sort_unstable();
        ranked.into_iter().map(|(_, i)| i).find(|&i| self.matches(i, text, &found))
    }

    /// The leftmost match of any pattern (the pattern's index and the matched range); of
    /// patterns matching at the same place, the first (as one alternation of them all would
    /// find). A pattern whose literals begin its matches can only match where the scanner
    /// found one: it is tried there, anchored, in text order, instead of searching the
    /// whole text for it.
    pub fn leftmost(&self, text: &str) -> Option<(usize, Range<usize>)> {
        if text.contains(NON_ASCII_FOLDS) {
            return self.leftmost_of((0..self.len()).collect(), text);
        }
        let mut starts: Vec<(usize, usize)> = Vec::new();
        let hit = self.marked(text, |at, i| {
            if self.prefixed[i] {
                starts.push((at, i));
            }
        });
        let best = self.leftmost_of((0..self.len()).filter(|&i| hit[i] && !self.prefixed[i]).collect(), text);
        starts.sort_unstable();
        starts.dedup();
        let before_best = |&&(at, i): &&(usize, usize)| best.as_ref().is_none_or(|(bi, bm)| (at, i) < (bm.start, *bi));
        let anchored = starts.iter().take_while(before_best).find_map(|&(at, i)| {
            let input = Input::new(text).range(at..).anchored(Anchored::Yes);
            Some((i, self.regex(i)?.search(&input)?.range()))
        });
        anchored.or(best)
    }

    /// The leftmost match of the given patterns, each searched for in the whole text.
    fn leftmost_of(&self, patterns: Vec<usize>, text: &str) -> Option<(usize, Range<usize>)> {
        patterns
            .into_iter()
            .filter_map(|i| Some((i, self.regex(i)?.find(text)?.range())))
            .min_by_key(|(i, m)| (m.start, *i))
    }

    /// Compile every pattern now (`check-config`, and `serve` at start and reload, so no
    /// message waits for it): a pattern that passes the syntax check can still be too big
    /// to compile.
    pub fn compile_all(&self) -> Result<()> {
        for (src, compiled) in self.sources.iter().zip(&self.compiled) {
            // Compiled already, or failed at first use (then say why now).
            if !matches!(compiled.get(), Some(Some(_))) {
                let re = compile(src, self.case_insensitive).with_context(|| format!("pattern {src:?}"))?;
                let _ = compiled.set(Some(re));
            }
        }
        Ok(())
    }

    /// Which patterns may match `text` (their literals occur, or they have none), and
    /// where the literals of those whose literals begin every match occur.
    fn found(&self, text: &str) -> Found {
        if text.contains(NON_ASCII_FOLDS) {
            return Found { hit: vec![true; self.len()], starts: None };
        }
        let mut starts: Vec<(usize, usize)> = Vec::new();
        let hit = self.marked(text, |at, i| {
            if self.prefixed[i] {
                starts.push((i, at));
            }
        });
        starts.sort_unstable();
        starts.dedup();
        Found { hit, starts: Some(starts) }
    }

    /// Whether pattern `i` matches `text`: tried only where its literals begin, anchored,
    /// when they begin every match (an anchored search reads only as far as the match
    /// could go, and its lazy DFA has fewer states to build), else searched for.
    fn matches(&self, i: usize, text: &str, found: &Found) -> bool {
        let Some(starts) = found.starts.as_deref().filter(|_| self.prefixed[i]) else {
            return self.is_match(i, text);
        };
        let Some(re) = self.regex(i) else { return false };
        let from = starts.partition_point(|&(p, _)| p < i);
        starts[from..]
            .iter()
            .take_while(|&&(p, _)| p == i)
            .any(|&(_, at)| re.is_match(Input::new(text).range(at..).anchored(Anchored::Yes)))
    }

    /// Per pattern, whether it is worth running on `text`: it has no literal, or one of
    /// its literals occurs (each occurrence also goes to `found`, with its start).
    fn marked(&self, text: &str, mut found: impl FnMut(usize, usize)) -> Vec<bool> {
        let mut hit = vec![false; self.len()];
        for &i in &self.always {
            hit[i] = true;
        }
        for m in self.scanner.find_overlapping_iter(text) {
            let i = self.literal_owner[m.pattern().as_usize()];
            hit[i] = true;
            found(m.start(), i);
        }
        hit
    }

    fn is_match(&self, i: usize, text: &str) -> bool {
        self.regex(i).is_some_and(|re| re.is_match(text))
    }

    fn regex(&self, i: usize) -> Option<&Regex> {
        self.compiled[i]
            .get_or_init(|| match compile(&self.sources[i], self.case_insensitive) {
                Ok(re) => Some(re),
                Err(e) => {
                    // Syntax was checked at load time; only a size limit can end here.
                    tracing::error!(pattern = %self.sources[i], error = %e, "pattern does not compile; ignored");
                    None
                }
            })
            .as_ref()
    }
}

fn compile(pattern: &str, case_insensitive: bool) -> Result<Regex> {
    let re = meta::Builder::new()
        .configure(Regex::config().auto_prefilter(false).nfa_size_limit(Some(SIZE_LIMIT)))
        .syntax(syntax::Config::new().case_insensitive(case_insensitive))
        .build(pattern)?;
    Ok(re)
}

/// Literals one of which every match of `pattern` contains (its prefixes or its
/// suffixes, whichever select better; failing both, literals inside it), or `None` when
/// no such finite set of useful literals exists. The flag is true for prefixes. Taken
/// from the case-sensitive form: the scanner folds ASCII case itself (more than a
/// case-sensitive pattern needs, which only costs a regex run); in a case-insensitive
/// set, a literal with non-ASCII letters (whose case it cannot fold) is not usable.
/// Parsing also checks the syntax; what only compiling finds (size) is left to first use
/// or `compile_all`.
fn required_literals(pattern: &str, case_insensitive: bool) -> Result<Option<(Vec<String>, bool)>> {
    let hir = ParserBuilder::new().build().parse(pattern)?;
    let scannable = |lits: Option<&[Literal]>| usable(lits, case_insensitive);
    // On a tie, prefixes (the last maximum wins): `leftmost` can anchor those.
    let best = [false, true]
        .into_iter()
        .filter_map(|prefix| Some((scannable(extract(&hir, prefix).literals())?, prefix)))
        .max_by_key(|(lits, _)| lits.iter().map(String::len).min().unwrap_or(0));
    Ok(best.or_else(|| Some((scannable(inner(&hir).as_deref())?, false))))
}

fn extract(hir: &Hir, prefix: bool) -> Seq {
    let mut ex = Extractor::new();
    ex.kind(if prefix { ExtractKind::Prefix } else { ExtractKind::Suffix }).limit_class(4).limit_repeat(4).limit_literal_len(24).limit_total(200);
    let mut seq = ex.extract(hir);
    if prefix {
        seq.optimize_for_prefix_by_preference();
    } else {
        seq.optimize_for_suffix_by_preference();
    }
    seq
}

/// Literals one of which every match contains somewhere: the longest literal a
/// concatenation cannot do without, one per branch of an alternation ("-{2,} ?The
/// following addresses had delivery errors" has no literal at either end).
fn inner(hir: &Hir) -> Option<Vec<Literal>> {
    match hir.kind() {
        HirKind::Literal(lit) => Some(vec![Literal::exact(lit.0.to_vec())]),
        HirKind::Capture(c) => inner(&c.sub),
        HirKind::Repetition(r) if r.min > 0 => inner(&r.sub),
        HirKind::Concat(parts) => parts.iter().filter_map(inner).max_by_key(|lits| lits.iter().map(Literal::len).min()),
        HirKind::Alternation(branches) => branches.iter().map(inner).try_fold(Vec::new(), |mut all, lits| {
            all.extend(lits?);
            Some(all)
        }),
        _ => None,
    }
}

/// The literals as strings, if the set is finite and all are long enough (and ASCII,
/// for a case-insensitive set).
fn usable(lits: Option<&[Literal]>, case_insensitive: bool) -> Option<Vec<String>> {
    let lits = lits?;
    if lits.is_empty() {
        // A pattern that can never match (e.g. `[^\s\S]`): nothing to scan for.
        return Some(Vec::new());
    }
    lits.iter()
        .map(|l| l.as_bytes())
        .map(|b| {
            let scannable = b.len() >= MIN_LITERAL && (b.is_ascii() || !case_insensitive);
            scannable.then(|| String::from_utf8(b.to_vec()).ok()).flatten()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(patterns: &[&str]) -> PatternSet {
        PatternSet::new(patterns.iter().map(|p| ("t", *p)), true).unwrap()
    }

    /// Syntax passes at load; only compiling finds the size. At first use the pattern is
    /// skipped (and logged), `compile_all` names it.
    #[test]
    fn a_pattern_too_big_to_compile_is_skipped_in_use_and_named_by_compile_all() {
        let m = matcher(&[r"\w{20000}", "user unknown"]);
        assert_eq!(m.matching("user unknown"), vec![1]);
        assert_eq!(m.matching(&"a".repeat(20_000)), Vec::<usize>::new());
        let err = format!("{:#}", m.compile_all().unwrap_err());
        assert!(err.contains(r"\w{20000}") && err.contains("exceeded limit"), "{err}");
        assert!(matcher(&["user unknown", r"\d{3}"]).compile_all().is_ok());
    }

    #[test]
    fn finds_what_the_regexes_find() {
        let m = matcher(&[r"\brelay(ing)? (access )?denied\b", r"user unknown|no such user", r"^\d+ x", "(?:q|j)z"]);
        assert_eq!(m.matching("554 5.7.1 Relay access DENIED"), vec![0]);
        assert_eq!(m.matching("550 No Such User here; user unknown"), vec![1]);
        assert_eq!(m.matching("550 x"), vec![2]);
        assert_eq!(m.matching("nothing here"), Vec::<usize>::new());
        assert_eq!(m.unfiltered(), 2, "`^\\d+ x` and `(?:q|j)z` have no literal of 3 bytes");
    }

    #[test]
    fn literal_found_but_regex_decides() {
        let m = matcher(&[r"\bdenied\b"]);
        assert!(m.matching("undeniedly").is_empty());
        assert_eq!(m.matching("is denied."), vec![0]);
    }

    /// `matching` and `best_match` try a pattern whose literals begin its matches only at
    /// those literals: look-behind still sees the text before one, and every occurrence
    /// is tried, not only the first.
    #[test]
    fn matches_are_tried_at_every_literal() {
        let m = matcher(&[r"\bdenied\b", r"\brelay(ing)? denied for \S+@", "quota"]);
        assert!(m.prefixed[0] && m.prefixed[1]);
        assert_eq!(m.matching("undenied, deniedly; denied."), vec![0]);
        assert_eq!(m.matching("relay denied; relaying denied for a@b"), vec![0, 1]);
        assert_eq!(m.matching("prelaying denied for a@b"), vec![0]);
        assert_eq!(m.best_match("relaying denied for a@b; quota", |i| (i != 0).then_some(i)), Some(1));
        assert_eq!(m.best_match("relaying denied for a@b; quota", |i| (i != 0).then_some(usize::MAX - i)), Some(2));
        assert_eq!(m.best_match("undenied", Some), None);
    }

    #[test]
    fn non_ascii_letters_and_case_folds() {
        // 'ä' cannot be folded by the scanner: the pattern is tried on every text.
        let m = matcher(&["empfänger unbekannt", "mailbox unknown"]);
        assert_eq!(m.matching("EMPFÄNGER UNBEKANNT"), vec![0]);
        // The Kelvin sign folds to k, the long s to s, in the regex: still found.
        assert_eq!(m.matching("mailbox un\u{212A}nown"), vec![1]);
        assert_eq!(m.matching("mailbox unknown"), vec![1]);
    }

    #[test]
    fn case_sensitive_sets_and_the_leftmost_match() {
        let set = PatternSet::new([("a", "Delivery failed"), ("b", "(?i)mailer-daemon"), ("c", "failed: ")], false).unwrap();
        assert_eq!(set.matching("delivery failed"), Vec::<usize>::new());
        assert_eq!(set.matching("MAILER-DAEMON"), vec![1]);
        let text = "x MAILER-DAEMON: Delivery failed: a@b";
        let (i, m) = set.leftmost(text).unwrap();
        assert_eq!((i, &text[m]), (1, "MAILER-DAEMON"));
        // Same start: the first pattern wins, as in an alternation.
        let set = PatternSet::new([("long", "Delivery failed"), ("short", "Delivery")], false).unwrap();
        assert_eq!(set.leftmost("Delivery failed").map(|(i, m)| (i, m.end)), Some((0, 15)));
        assert!(set.leftmost("nothing").is_none());
    }

    /// Patterns anchored at their literals: look-behind (`\b`, `^`) still sees the text
    /// before the literal, a later occurrence is tried when an earlier one fails, and a
    /// pattern searched for in the whole text (no prefix literal) still wins when it
    /// starts first.
    #[test]
    fn leftmost_anchored_at_literals() {
        let set = PatternSet::new([("b", r"\bdenied\b"), ("m", r"(?m)^user unknown"), ("s", r"\s+quota exceeded")], true).unwrap();
        let text = "undenied x\nsee: user unknown\nuser unknown; is denied.";
        assert_eq!(set.leftmost(text).map(|(i, m)| (i, &text[m])), Some((1, "user unknown")));
        assert_eq!(set.leftmost("user unknownly denied").map(|(i, m)| (i, m.start)), Some((1, 0)));
        let text = "a  quota exceeded, denied";
        assert_eq!(set.leftmost(text).map(|(i, m)| (i, &text[m])), Some((2, "  quota exceeded")));
        assert_eq!(set.leftmost("denied;  quota exceeded").map(|(i, m)| (i, m.start)), Some((0, 0)));
        assert_eq!(set.leftmost("undeniedly, no").map(|(i, _)| i), None);
    }

    /// A pattern with no literal at either end is still gated by one inside it; in a
    /// case-sensitive set, non-ASCII literals gate too.
    #[test]
    fn literals_inside_a_pattern_gate_it() {
        let set = PatternSet::new(
            [("x1", r"-{2,} ?The following addresses had delivery errors ?-{2,}"), ("alt", r"-+ ?failure reasons|^\d+ x"), ("ru", r"сервером Mail\.Ru")],
            false,
        )
        .unwrap();
        assert_eq!(set.unfiltered(), 1, "only `alt` (its branch `^\\d+ x` has no literal) runs on every text");
        assert_eq!(set.matching("--- The following addresses had delivery errors ---"), vec![0]);
        assert_eq!(set.matching("The following addresses had delivery errors"), Vec::<usize>::new());
        assert_eq!(set.matching("отклонено сервером Mail.Ru"), vec![2]);
        let text = "x\n-- The following addresses had delivery errors --\n12 x";
        assert_eq!(set.leftmost(text).map(|(i, m)| (i, m.start)), Some((0, 2)));
        let folded = PatternSet::new([("ru", r"сервером mail\.ru")], true).unwrap();
        assert_eq!(folded.unfiltered(), 1, "a non-ASCII literal cannot gate a case-insensitive pattern");
        assert_eq!(folded.matching("СЕРВЕРОМ MAIL.RU"), vec![0]);
    }

    #[test]
    fn invalid_patterns_are_refused_at_load() {
        let err = PatternSet::new([("r1", "unclosed (group")], true).err().expect("refused");
        assert!(format!("{err:#}").contains("r1: invalid pattern"), "{err:#}");
    }

    /// The scanner's premise: case-insensitively, an ASCII letter matches no non-ASCII
    /// character but those in `NON_ASCII_FOLDS`.
    #[test]
    fn ascii_letters_fold_only_to_kelvin_and_long_s() {
        for letter in b'a'..=b'z' {
            let re = regex::RegexBuilder::new(&format!("^{}$", letter as char)).case_insensitive(true).build().unwrap();
            for c in (0x80..=0x10FFFFu32).filter_map(char::from_u32) {
                if re.is_match(c.encode_utf8(&mut [0; 4])) {
                    assert!(NON_ASCII_FOLDS.contains(&c), "{} folds to {c:?}", letter as char);
                }
            }
        }
    }
}
