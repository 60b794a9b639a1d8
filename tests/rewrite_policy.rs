//! Per-domain policy, language choice, modes and skipped recipients.

mod rewrite_support;

use mail_parser::{HeaderName, MessageParser};
use plainbounce::engine::{Options, Outcome};
use rewrite_support::*;

/// The postfix fixture addressed to someone else.
fn with_to(raw: &[u8], to: &str) -> Vec<u8> {
    let text = String::from_utf8(raw.to_vec()).unwrap();
    assert!(text.contains("\nTo: anna@example.org\n"));
    text.replacen("\nTo: anna@example.org\n", &format!("\nTo: {to}\n"), 1).into_bytes()
}

const DOMAINS: &str = r#"
[default]
organisation = "Example Hosting"

[domains."example.org"]
language = "de"
organisation = "Example GmbH"
helpdesk = "it-hilfe@example.org"
helpdesk_url = "https://intranet.example.org/hilfe"
links = [{ label = "Störungen", url = "https://status.example.org/" }]

[domains."quiet.example"]
mode = "off"

[domains."notes.example"]
mode = "annotate"
"#;

fn text_for(engine: &plainbounce::engine::Engine, raw: &[u8], name: &str, opts: &Options) -> (String, String) {
    notification(&rewrite_with(engine, raw, &facts(name), opts))
}

#[test]
fn domain_policy_chooses_language_organisation_and_help() {
    let engine = test_engine(DOMAINS);
    let raw = fixture("postfix-userunknown.eml");
    let (text, html) = text_for(&engine, &raw, "postfix-userunknown.eml", &Options::default());
    for needle in ["Ihre Nachricht an bob@example.net konnte nicht zugestellt werden", "Die Adresse gibt es nicht", "Example GmbH", "Wenden Sie sich an it-hilfe@example.org.", "https://intranet.example.org/hilfe"] {
        assert!(text.contains(needle), "lacks {needle:?}:\n{text}");
    }
    assert!(html.contains("href=\"https://status.example.org/\""), "{html}");
    assert!(html.contains("lang=\"de\""));

    // A subdomain falls under its parent's table.
    let (text, _) = text_for(&engine, &with_to(&raw, "anna@mail.example.org"), "postfix-userunknown.eml", &Options::default());
    assert!(text.contains("Example GmbH"), "{text}");

    // Another domain gets [default]: English, no helpdesk.
    let (text, html) = text_for(&engine, &with_to(&raw, "Someone <someone@other.example>"), "postfix-userunknown.eml", &Options::default());
    assert!(text.contains("Your message to bob@example.net couldn't be delivered"), "{text}");
    assert!(text.contains("Example Hosting"));
    assert!(!text.contains("it-hilfe") && !html.contains("Need help?"));
}

#[test]
fn language_from_the_returned_message_then_fallback() {
    let engine = test_engine("");
    // Content-Language: de-DE of the returned message.
    let (text, _) = text_for(&engine, &fixture("multi-recipient.crlf.eml"), "multi-recipient.crlf.eml", &Options::default());
    assert!(text.contains("Ihre Nachricht an dave@example.info ist noch nicht zugestellt"), "{text}");
    // Accept-Language: fr-FR, ...
    let (text, html) = text_for(&engine, &fixture("global-dsn.eml"), "global-dsn.eml", &Options::default());
    assert!(text.contains("Votre message à josé@exemple.fr n'a pas pu être remis"), "{text}");
    assert!(html.contains("lang=\"fr\""));
    // Nothing said: the fallback language.
    let engine = test_engine("[default]\nfallback_language = \"es\"\n");
    let (text, _) = text_for(&engine, &fixture("postfix-userunknown.eml"), "postfix-userunknown.eml", &Options::default());
    assert!(text.contains("Su mensaje a bob@example.net no se pudo entregar"), "{text}");
    // The domain's fixed language beats the message's.
    let engine = test_engine("[default]\nlanguage = \"en\"\n");
    let (text, _) = text_for(&engine, &fixture("global-dsn.eml"), "global-dsn.eml", &Options::default());
    assert!(text.contains("Your message to josé@exemple.fr couldn't be delivered"), "{text}");
}

#[test]
fn preview_options_force_domain_and_language() {
    let engine = test_engine(DOMAINS);
    let raw = with_to(&fixture("postfix-userunknown.eml"), "x@other.example");
    let opts = Options { domain: Some("example.org"), ..Default::default() };
    assert!(text_for(&engine, &raw, "postfix-userunknown.eml", &opts).0.contains("Example GmbH"));
    let opts = Options { domain: Some("example.org"), lang: Some("fr"), ..Default::default() };
    assert!(text_for(&engine, &raw, "postfix-userunknown.eml", &opts).0.contains("Votre message à bob@example.net"));
    // The door's envelope recipient beats the To: header.
    let opts = Options { recipient: Some("anna@example.org"), ..Default::default() };
    assert!(text_for(&engine, &raw, "postfix-userunknown.eml", &opts).0.contains("Example GmbH"));
}

#[test]
fn annotate_mode_only_adds_headers() {
    let engine = test_engine(&format!("{DOMAINS}\n[domains.\"example.com\"]\nmode = \"annotate\"\nlanguage = \"de\"\n"));
    let raw = with_to(&fixture("postfix-userunknown.eml"), "anna@notes.example");
    let m = modification(engine.process_bounce(&raw, &facts("postfix-userunknown.eml"), &Options::default()));
    assert_eq!(m.body, None);
    let out = plainbounce::engine::apply(&raw, &m);
    assert_eq!(&out[header_block(&out).len()..], &raw[header_block(&raw).len()..], "body untouched");
    assert_eq!(header(&out, "X-Plainbounce"), [format!("X-Plainbounce: annotated; reason={}", expect(&engine, "postfix-userunknown.eml", "en")[0].reason)]);
    let expl = explanations(&out);
    let e = &expect(&engine, "postfix-userunknown.eml", "en")[0];
    assert_eq!(expl, [format!("bob@example.net; reason={}; status=5.1.1; {}. {}", e.reason, e.title.trim_end_matches('.'), e.remedy)]);

    // Several recipients, German (non-ASCII, so RFC 2047 encoded).
    let raw = String::from_utf8(fixture("multi-recipient.crlf.eml")).unwrap().replace("To: Anna Example <anna@example.org>", "To: anna@example.com").into_bytes();
    let out = rewrite_with(&engine, &raw, &facts("multi-recipient.crlf.eml"), &Options::default());
    let expl = header(&out, "X-Plainbounce-Explanation");
    assert_eq!(expl.len(), 3, "{expl:?}");
    assert!(expl.iter().all(|h| h.is_ascii()));
    assert!(expl[0].starts_with("X-Plainbounce-Explanation: bob@example.net; reason=userunknown; status=5.1.1;"), "{expl:?}");
    assert!(expl[0].contains("=?UTF-8?Q?Die_Adresse"), "only the text is encoded: {expl:?}");
    let decoded = explanations(&out);
    assert!(decoded[0].contains("Prüfen Sie die Adresse auf Tippfehler"), "{decoded:?}");
    let dave = &expect(&engine, "multi-recipient.crlf.eml", "de")[2];
    assert!(decoded[2].starts_with(&format!("dave@example.info; reason={}; status=4.4.1;", dave.reason)), "{decoded:?}");
    // Annotated messages are not handled twice either.
    assert!(matches!(engine.process_bounce(&out, &facts("multi-recipient.crlf.eml"), &Options::default()), Outcome::Pass(_)));
}

/// X-Plainbounce-Explanation values, unfolded and decoded (RFC 2047) by mail-parser.
fn explanations(raw: &[u8]) -> Vec<String> {
    let parser = MessageParser::new().header_text(HeaderName::Other("X-Plainbounce-Explanation".into()));
    let msg = parser.parse_headers(raw).unwrap();
    msg.header_values("X-Plainbounce-Explanation").filter_map(|v| v.as_text().map(|t| t.replace("\r\n", "").replace('\n', ""))).collect()
}

#[test]
fn off_mode_passes() {
    let engine = test_engine(DOMAINS);
    let raw = with_to(&fixture("postfix-userunknown.eml"), "anna@quiet.example");
    match engine.process_bounce(&raw, &facts("postfix-userunknown.eml"), &Options::default()) {
        Outcome::Pass(why) => assert!(why.contains("off"), "{why}"),
        Outcome::Modify(_) => panic!("mode off rewrote"),
    }
    let engine = test_engine("[default]\nmode = \"off\"\n");
    assert!(matches!(engine.process_bounce(&fixture("qmail-plain.eml"), &facts("qmail-plain.eml"), &Options::default()), Outcome::Pass(_)));
}

#[test]
fn automated_bounce_handlers_are_skipped() {
    let engine = test_engine("skip_patterns = ['^bounces?[-+=._]', '-bounces?([-+=.][^@]*)?@', '^[^@]*\\+[^@]*=[^@]*@', '^noreply@']\n");
    let raw = fixture("postfix-userunknown.eml");
    let b = facts("postfix-userunknown.eml");
    for to in [
        "bounces+1234-abcd=example.org@mailer.example.net",
        "bounce-mc.us5_123.456-anna=example.org@mail123.example.net",
        "announce-bounces@lists.example.org",
        "announce-bounces+anna=example.org@lists.example.org",
        "list+anna=example.org@lists.example.org",
        "noreply@example.org",
    ] {
        match engine.process_bounce(&with_to(&raw, to), &b, &Options::default()) {
            Outcome::Pass(why) => assert!(why.contains("automated"), "{to}: {why}"),
            Outcome::Modify(_) => panic!("{to} was rewritten"),
        }
    }
    for to in ["anna+news@example.org", "bouncer@example.org"] {
        assert!(matches!(engine.process_bounce(&with_to(&raw, to), &b, &Options::default()), Outcome::Modify(_)), "{to}");
    }
    // The defaults skip VERP too, and an empty list skips nothing.
    let verp = with_to(&raw, "bounces+1234=example.org@mailer.example.net");
    assert!(matches!(test_engine("").process_bounce(&verp, &b, &Options::default()), Outcome::Pass(_)));
    assert!(matches!(test_engine("skip_patterns = []\n").process_bounce(&verp, &b, &Options::default()), Outcome::Modify(_)));
}

#[test]
fn only_failed_or_delayed_delivery_reports_are_touched() {
    let engine = test_engine("");
    for name in NOT_REWRITTEN {
        match engine.process_bounce(&fixture(name), &facts(name), &Options::default()) {
            Outcome::Pass(_) => {}
            Outcome::Modify(m) => panic!("{name} rewritten: {}", m.summary),
        }
    }
    let mut empty = facts("postfix-userunknown.eml");
    empty.recipients.clear();
    assert!(matches!(engine.process_bounce(&fixture("postfix-userunknown.eml"), &empty, &Options::default()), Outcome::Pass(_)));
    // Messages that are not bounces pass through `process` untouched.
    for name in ["plain-message.eml", "autoreply.eml", "arf-feedback.eml", "success-dsn.eml"] {
        assert!(matches!(engine.process(&fixture(name)), Outcome::Pass(_)), "{name}");
    }
}
