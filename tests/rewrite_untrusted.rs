//! Text from remote servers is hostile: it must not run as markup, change the message's
//! structure, add headers or be read as template syntax.

mod rewrite_support;

use plainbounce::engine::Options;
use rewrite_support::*;

const NAME: &str = "injection.eml";

fn lines_starting_with(raw: &[u8], prefix: &[u8]) -> usize {
    raw.split(|&b| b == b'\n').filter(|l| l.starts_with(prefix)).count()
}

fn assert_structure_kept(raw: &[u8], out: &[u8]) {
    let (before, after) = (top_parts(raw), top_parts(out));
    assert_eq!(before.len(), after.len(), "no part added or lost");
    assert_eq!(before[1..], after[1..]);
    assert_eq!(lines_starting_with(raw, b"--INJ-BOUNDARY"), lines_starting_with(out, b"--INJ-BOUNDARY"), "no extra delimiter line");
    for name in ["Bcc", "X-Evil"] {
        assert!(header(out, name).is_empty(), "{name} header injected");
    }
}

#[test]
fn html_escapes_and_text_keeps_remote_text_verbatim_minus_controls() {
    let engine = test_engine("[default]\norganisation = \"ORG-NAME\"\n");
    let (raw, out) = rewrite_fixture(&engine, NAME);
    assert_structure_kept(&raw, &out);
    let (text, html) = notification(&out);
    for (part, s) in [("text", &text), ("html", &html)] {
        assert!(!s.contains('\x1b') && !s.contains('\u{202e}') && !s.contains('\u{202c}') && !s.contains('\0'), "{part}: control characters");
        assert!(!s.contains("ORG-NAME}}"), "{part}");
        // Template syntax in the diagnostic is shown, never evaluated.
        assert!(s.contains("{{#each recipients}}{{/each}} {{&gt; evil}}") || s.contains("{{#each recipients}}{{/each}} {{> evil}}"), "{part}:\n{s}");
    }
    assert!(text.contains("--INJ-BOUNDARY 550 5.1.1 <script>alert(\"x\")</script> {{organisation}} {{#each recipients}}{{/each}} {{> evil}} [2Jevil Bcc: victim@example.com"), "{text}");
    assert!(text.contains("\"<b>mallory</b>\"@example.net"), "text is not HTML-escaped");
    assert!(!html.contains("<script") && !html.contains("<img") && !html.contains("<b>mallory"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"), "{html}");
    assert!(html.contains("mail.example.org&lt;img src&#x3D;x onerror&#x3D;alert(1)&gt;"), "{html}");
    // The subject's CR LF became a space: one line, no header.
    assert!(text.contains("hello <script> Bcc: victim@example.com"), "{text}");
}

#[test]
fn a_diagnostic_at_the_start_of_a_line_cannot_open_a_part() {
    // A template that puts the remote text first on its line, and a diagnostic that
    // starts with the message's own boundary.
    let dir = temp_dir("linestart", &[("bounce.txt.hbs", "{{#each recipients}}{{diagnostic}}\n{{remote_mta}}\n{{/each}}")]);
    let engine = test_engine(&format!("template_dir = {dir:?}\n"));
    let (raw, out) = rewrite_fixture(&engine, NAME);
    assert_structure_kept(&raw, &out);
    let (text, _) = notification(&out);
    assert!(text.starts_with("--INJ-BOUNDARY 550 5.1.1"), "{text}");
    assert!(text.contains("mx.example.net X-Evil: 1"), "{text}");
}

#[test]
fn annotate_mode_headers_cannot_be_split() {
    let engine = test_engine("[default]\nmode = \"annotate\"\n");
    let raw = fixture(NAME);
    let mut b = facts(NAME);
    b.recipients[0].address = Some("x@example.net\r\nBcc: victim@example.com".into());
    let out = rewrite_with(&engine, &raw, &b, &Options::default());
    assert_structure_kept(&raw, &out);
    let head = header_block(&out);
    for line in head.split(|&b| b == b'\n').filter(|l| !l.is_empty() && l != b"\r") {
        let starts_field = line.iter().take_while(|&&b| b != b':').all(|b| b.is_ascii_graphic()) && line.contains(&b':');
        assert!(starts_field || line[0] == b' ' || line[0] == b'\t', "stray header line {:?}", String::from_utf8_lossy(line));
    }
    let unfolded = String::from_utf8_lossy(head).replace("\r\n ", " ").replace("\n ", " ");
    assert!(unfolded.contains("X-Plainbounce-Explanation: x@example.net Bcc: victim@example.com; reason="), "{unfolded}");
}
