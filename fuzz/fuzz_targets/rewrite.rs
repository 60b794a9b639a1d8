//! The whole rewrite, input message → output message, as the doors do it.
//!
//! 1. Arbitrary bytes as a message: only a delivery report may be changed, the change
//!    applied gives valid MIME with parts 2..n byte-identical and no injected header or
//!    boundary, and a rewritten message is never rewritten again.
//! 2. Arbitrary bytes as remote text (diagnostic, address, status, remote MTA, subject)
//!    in an otherwise ordinary bounce, handed to the engine as parsed facts without the
//!    parser's cleaning: the same invariants must hold on the engine's own sanitising.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plainbounce::config::Config;
use plainbounce::dsn::{self, Bounce, Detection, OriginalMessage, RecipientFacts};
use plainbounce::engine::{self, Engine, Options, Outcome};
use plainbounce_fuzz::hostile_support::Dsn;
use plainbounce_fuzz::invariants::check_rewrite;
use std::sync::LazyLock;

static ENGINE: LazyLock<Engine> = LazyLock::new(|| Engine::new(Config::embedded()).expect("default engine"));

fuzz_target!(|data: &[u8]| {
    whole_message(data);
    remote_text(data);
});

fn whole_message(raw: &[u8]) {
    let Outcome::Modify(m) = ENGINE.process(raw) else { return };
    let is_report = matches!(dsn::parse(raw), Detection::Bounce(b) if b.is_delivery_report());
    assert!(is_report, "a message that is no delivery report was changed: {}", m.summary);
    verify(raw, &m);
}

fn remote_text(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut f = text.split('\0').map(str::to_string);
    let diagnostic = f.next().unwrap_or_default();
    let address = f.next().unwrap_or_else(|| "bob@remote.example".into());
    let status = f.next().unwrap_or_else(|| "5.1.1".into());
    let remote_mta = f.next();
    let subject = f.next();
    let mut dsn = Dsn::new(&diagnostic);
    dsn.recipients[0][0] = format!("Final-Recipient: rfc822; {address}");
    let raw = dsn.build();
    let bounce = Bounce {
        format: "rfc3464",
        reporting_mta: Some("mx.example.org".into()),
        recipients: vec![RecipientFacts {
            address: Some(address),
            action: Some("failed".into()),
            status: Some(status),
            diagnostic: Some(diagnostic),
            remote_mta,
            ..Default::default()
        }],
        original: OriginalMessage { subject, to: Some("bob@remote.example".into()), ..Default::default() },
        ..Default::default()
    };
    // Passing is safe (fail-open); a change must be sound.
    if let Outcome::Modify(m) = ENGINE.process_bounce(&raw, &bounce, &Options::default()) {
        verify(&raw, &m);
    }
}

fn verify(raw: &[u8], m: &engine::Modification) {
    let out = engine::apply(raw, m);
    if let Err(e) = check_rewrite(raw, m, &out) {
        panic!("{e}\n--- output ---\n{}", String::from_utf8_lossy(&out));
    }
    let again = ENGINE.process(&out);
    assert!(matches!(again, Outcome::Pass(_)), "rewritten twice: {again:?}");
}
