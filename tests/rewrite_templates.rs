//! Templates: overrides, per-domain sets, languages, and failing safely.

mod rewrite_support;

use plainbounce::engine::{Options, Outcome};
use rewrite_support::*;

const SHORT_TXT: &str = "SHORT {{#each recipients}}[{{address}}: {{title}}]{{/each}} {{t \"label_what_to_do\"}}\n";
const SHORT_HTML: &str = "<p>SHORT {{#each recipients}}<b>{{address}}</b>{{/each}}</p>\n";

#[test]
fn template_dir_overrides_layouts_and_strings() {
    let dir = temp_dir("override", &[("lang/en.toml", "headline_failed = \"Bounced: {{address}}\"\n")]);
    let engine = test_engine(&format!("template_dir = {:?}\n", dir));
    let (_, out) = rewrite_fixture(&engine, "postfix-userunknown.eml");
    let (text, html) = notification(&out);
    assert!(text.contains("Bounced: bob@example.net") && html.contains("Bounced: bob@example.net"), "{text}");
    // The rest of the strings still come from the built-in set.
    assert!(text.contains("What you can do"));

    let dir = temp_dir("layouts", &[("bounce.txt.hbs", SHORT_TXT), ("bounce.html.hbs", SHORT_HTML)]);
    let engine = test_engine(&format!("template_dir = {:?}\n", dir));
    let (_, out) = rewrite_fixture(&engine, "postfix-userunknown.eml");
    let (text, html) = notification(&out);
    let title = &expect(&engine, "postfix-userunknown.eml", "en")[0].title;
    assert_eq!(text, format!("SHORT [bob@example.net: {title}] What you can do\n"));
    assert_eq!(html, "<p>SHORT <b>bob@example.net</b></p>\n");
}

/// `{{t "key"}}` sees the whole message even inside `each`; `{{t "key" this}}` sees
/// the recipient, and so does a computed value (a copy, having no path).
#[test]
fn strings_render_with_the_message_or_the_data_given() {
    let layout = "{{#each recipients}}[{{t \"mine\" this}}|{{t \"whole\"}}|{{t \"mine\" (lookup ../recipients @index)}}]{{/each}}\n";
    let dir = temp_dir(
        "strings",
        &[
            ("bounce.txt.hbs", layout),
            ("bounce.html.hbs", SHORT_HTML),
            ("lang/en.toml", "mine = \"{{address}}\"\nwhole = \"{{lang}}\"\n"),
        ],
    );
    let engine = test_engine(&format!("template_dir = {:?}\n", dir));
    let (_, out) = rewrite_fixture(&engine, "postfix-userunknown.eml");
    assert_eq!(notification(&out).0, "[bob@example.net|en|bob@example.net]\n");
}

/// A string is compiled once for both parts; each part still escapes as its own
/// registry does: HTML-escaped in the HTML part, verbatim in the text part.
#[test]
fn one_string_escapes_per_part() {
    let layout = "{{#each recipients}}[{{t \"diag\" this}}]{{/each}}\n";
    let dir = temp_dir(
        "escape",
        &[("bounce.txt.hbs", layout), ("bounce.html.hbs", layout), ("lang/en.toml", "diag = \"{{diagnostic}}\"\n")],
    );
    let engine = test_engine(&format!("template_dir = {:?}\n", dir));
    let (_, out) = rewrite_fixture(&engine, "injection.eml");
    let (text, html) = notification(&out);
    assert!(text.contains("<script>alert(\"x\")</script>"), "{text}");
    assert!(html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;") && !html.contains("<script"), "{html}");
}

#[test]
fn per_domain_template_name_dir_and_language_layouts() {
    let dir = temp_dir(
        "domain",
        &[
            ("short.txt.hbs", SHORT_TXT),
            ("short.html.hbs", SHORT_HTML),
            ("bounce.de.txt.hbs", "NUR DEUTSCH {{t \"label_what_to_do\"}}\n"),
            ("lang/nl.toml", "label_what_to_do = \"Wat u kunt doen\"\n"),
        ],
    );
    let engine = test_engine(&format!(
        "[domains.\"example.org\"]\ntemplate_dir = {dir:?}\ntemplate = \"short\"\nlanguage = \"nl\"\n[domains.\"example.de\"]\ntemplate_dir = {dir:?}\nlanguage = \"de\"\n"
    ));
    let raw = fixture("postfix-userunknown.eml");
    let b = facts("postfix-userunknown.eml");
    let (text, _) = notification(&rewrite_with(&engine, &raw, &b, &Options::default()));
    let title = &expect(&engine, "postfix-userunknown.eml", "nl")[0].title;
    assert_eq!(text, format!("SHORT [bob@example.net: {title}] Wat u kunt doen\n"), "a new language from lang/nl.toml");
    // German layout only for German; HTML still the built-in one.
    let opts = Options { domain: Some("example.de"), ..Default::default() };
    let (text, html) = notification(&rewrite_with(&engine, &raw, &b, &opts));
    assert_eq!(text, "NUR DEUTSCH Was Sie tun können\n");
    assert!(html.contains("Ihre Nachricht an bob@example.net"));
    let opts = Options { domain: Some("example.de"), lang: Some("fr"), ..Default::default() };
    let (text, _) = notification(&rewrite_with(&engine, &raw, &b, &opts));
    assert!(text.contains("Votre message à bob@example.net"), "{text}");
    // Other domains keep the built-in templates.
    let opts = Options { domain: Some("example.com"), ..Default::default() };
    assert!(notification(&rewrite_with(&engine, &raw, &b, &opts)).0.contains("Your message to bob@example.net"));
}

#[test]
fn broken_templates_are_refused_at_start() {
    let bad = temp_dir("syntax", &[("bounce.html.hbs", "<p>{{#each recipients}}unclosed</p>\n")]);
    let err = engine_error(&format!("template_dir = {bad:?}\n"));
    assert!(err.contains("bounce.html.hbs"), "{err}");

    let strict = temp_dir("strict", &[("bounce.txt.hbs", "{{no_such_field}}\n")]);
    let err = engine_error(&format!("template_dir = {strict:?}\n"));
    assert!(err.contains("sample bounce") && err.contains("no_such_field"), "{err}");

    let bad_string = temp_dir("string", &[("lang/de.toml", "title = \"{{#if}}\"\n")]);
    let err = engine_error(&format!("template_dir = {bad_string:?}\n"));
    assert!(err.contains("title") && err.contains("de"), "{err}");

    let not_toml = temp_dir("nottoml", &[("lang/de.toml", "title = 3\n")]);
    assert!(engine_error(&format!("template_dir = {not_toml:?}\n")).contains("de.toml"));

    let err = engine_error("[domains.\"example.org\"]\ntemplate = \"nope\"\n");
    assert!(err.contains("template \"nope\" not found") && err.contains("example.org"), "{err}");

    let err = engine_error("[default]\nlanguage = \"xx\"\n");
    assert!(err.contains("language \"xx\" has no strings"), "{err}");

    let err = engine_error("template_dir = \"/nonexistent/plainbounce\"\n");
    assert!(err.contains("/nonexistent/plainbounce"), "{err}");
}

#[test]
fn a_template_failing_on_a_real_bounce_leaves_it_unchanged() {
    // Passes the start-up samples, fails on a bounce for carol.
    let dir = temp_dir(
        "runtime",
        &[("bounce.txt.hbs", "{{#each recipients}}{{#if (eq address \"carol@example.com\")}}{{no_such_field}}{{/if}}{{address}}\n{{/each}}")],
    );
    let engine = test_engine(&format!("template_dir = {dir:?}\n"));
    let (_, out) = rewrite_fixture(&engine, "postfix-userunknown.eml");
    assert!(notification(&out).0.contains("bob@example.net"));
    let raw = fixture("multi-recipient.crlf.eml");
    match engine.process_bounce(&raw, &facts("multi-recipient.crlf.eml"), &Options::default()) {
        Outcome::Pass(why) => assert!(why.contains("error") && why.contains("no_such_field"), "{why}"),
        Outcome::Modify(_) => panic!("rewritten despite a template error"),
    }
}

#[test]
fn shipped_templates_render_in_every_language() {
    let engine = test_engine("");
    let raw = fixture("multi-recipient.crlf.eml");
    let b = facts("multi-recipient.crlf.eml");
    let mut headlines = Vec::new();
    for lang in ["en", "de", "fr", "es"] {
        assert!(engine.languages("").contains(&lang.to_string()));
        let opts = Options { lang: Some(lang), ..Default::default() };
        let (text, html) = notification(&rewrite_with(&engine, &raw, &b, &opts));
        assert!(html.contains(&format!("lang=\"{lang}\"")));
        assert!(text.contains("bob@example.net") && text.contains("dave@example.info"));
        headlines.push(text.lines().find(|l| l.contains("bob@example.net")).unwrap().to_string());
    }
    headlines.dedup();
    assert_eq!(headlines.len(), 4, "each language has its own headline: {headlines:?}");
}
