//! Standard reports: RFC 6522 multipart/report with RFC 3464 message/delivery-status and
//! RFC 6533 message/global-delivery-status, ARF feedback reports, RFC 3834 auto-replies.
//! All messages are synthetic.

use plainbounce::dsn::{self, Bounce, Detection, ReportKind};

fn bounce(raw: &str) -> Bounce {
    match dsn::parse(raw.as_bytes()) {
        Detection::Bounce(b) => b,
        Detection::NotBounce(why) => panic!("not read as a bounce: {why}"),
    }
}

const MULTI: &str = "\
From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
To: alice@example.org
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary=\"BOUND\"

--BOUND
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.net.

<bob@example.com>: host mx.example.com[192.0.2.10] said: 550 5.1.1 <bob@example.com>:
    Recipient address rejected: User unknown (in reply to RCPT TO command)

<carol@example.com>: host mx.example.com[192.0.2.10] said: 452 4.2.2 Mailbox
    full (in reply to RCPT TO command)

--BOUND
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net
X-Postfix-Sender: rfc822; alice@example.org
Arrival-Date: Mon,  3 Mar 2025 10:00:00 +0100 (CET)

Final-Recipient: rfc822; bob@example.com
Original-Recipient: rfc822;Bob@Example.com
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.example.com
Diagnostic-Code: smtp; 550 5.1.1 <bob@example.com>: Recipient address rejected:
    User unknown
Last-Attempt-Date: Mon,  3 Mar 2025 10:00:01 +0100 (CET)

Final-Recipient: rfc822; carol@example.com
Action: delayed
Status: 4.2.2
Remote-MTA: dns; mx.example.com
Diagnostic-Code: smtp; 452 4.2.2 Mailbox full
Will-Retry-Until: Thu,  6 Mar 2025 10:00:00 +0100 (CET)

--BOUND
Content-Type: text/rfc822-headers

From: Alice <alice@example.org>
To: bob@example.com, carol@example.com
Subject: Quarterly report
Message-ID: <q1@example.org>
Date: Mon, 3 Mar 2025 09:59:00 +0100
Content-Language: de-DE
Accept-Language: de-DE, en-US

--BOUND--
";

#[test]
fn rfc3464_report_with_two_recipients() {
    let b = bounce(MULTI);
    assert_eq!(b.kind, ReportKind::Delivery);
    assert_eq!(b.format, "rfc3464");
    assert_eq!(b.reporting_mta.as_deref(), Some("mx.example.net"));
    assert_eq!(b.recipients.len(), 2);

    let bob = &b.recipients[0];
    assert_eq!(bob.address.as_deref(), Some("bob@example.com"));
    assert_eq!(bob.original_recipient.as_deref(), Some("Bob@Example.com"));
    assert_eq!(bob.action.as_deref(), Some("failed"));
    assert_eq!(bob.status.as_deref(), Some("5.1.1"));
    assert_eq!(bob.reply_code, Some(550));
    assert_eq!(bob.remote_mta.as_deref(), Some("mx.example.com"));
    // Folded Diagnostic-Code: unfolded, "smtp;" type removed.
    assert_eq!(bob.diagnostic.as_deref(), Some("550 5.1.1 <bob@example.com>: Recipient address rejected: User unknown"));
    assert_eq!(bob.command.as_deref(), Some("RCPT"));
    assert_eq!(bob.last_attempt.as_deref(), Some("Mon, 3 Mar 2025 10:00:01 +0100 (CET)"));

    let carol = &b.recipients[1];
    assert_eq!(carol.action.as_deref(), Some("delayed"));
    assert_eq!(carol.status.as_deref(), Some("4.2.2"));
    assert_eq!(carol.reply_code, Some(452));
    assert_eq!(carol.will_retry_until.as_deref(), Some("Thu, 6 Mar 2025 10:00:00 +0100 (CET)"));

    let o = &b.original;
    assert_eq!(o.from.as_deref(), Some("Alice <alice@example.org>"));
    assert_eq!(o.subject.as_deref(), Some("Quarterly report"));
    assert_eq!(o.message_id.as_deref(), Some("<q1@example.org>"));
    assert_eq!(o.content_language.as_deref(), Some("de-DE"));
    assert_eq!(o.accept_language.as_deref(), Some("de-DE, en-US"));
    // No Return-Path in the returned headers: the report's X-Postfix-Sender.
    assert_eq!(o.return_path.as_deref(), Some("alice@example.org"));
}

#[test]
fn global_delivery_status_with_utf8_addresses() {
    let raw = "\
From: postmaster@mx.例え.jp
To: 送信者@example.jp
Subject: =?UTF-8?B?6YWN6YGU5LiN6IO9?=
MIME-Version: 1.0
Content-Type: multipart/report; report-type=global-delivery-status; boundary=b1

--b1
Content-Type: text/plain; charset=utf-8

Die Nachricht konnte nicht zugestellt werden.

--b1
Content-Type: message/global-delivery-status
Content-Transfer-Encoding: 8bit

Reporting-MTA: dns; mx.例え.jp

Final-Recipient: utf-8; j\\x{F6}rg@b\\x{FC}cher.example
Original-Recipient: utf-8; jörg@bücher.example
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 Benutzer jörg unbekannt

--b1
Content-Type: message/global-headers

From: 送信者@example.jp
Subject: Grüße

--b1--
";
    let b = bounce(raw);
    assert_eq!(b.format, "rfc6533");
    assert_eq!(b.reporting_mta.as_deref(), Some("mx.例え.jp"));
    let r = &b.recipients[0];
    assert_eq!(r.address.as_deref(), Some("jörg@bücher.example"));
    assert_eq!(r.original_recipient.as_deref(), Some("jörg@bücher.example"));
    assert_eq!(r.diagnostic.as_deref(), Some("550 5.1.1 Benutzer jörg unbekannt"));
    assert_eq!(b.original.subject.as_deref(), Some("Grüße"));
}

#[test]
fn base64_encoded_delivery_status_part() {
    // "Final-Recipient: rfc822; dave@example.com\r\nAction: failed\r\nStatus: 5.2.2\r\n
    //  Diagnostic-Code: smtp; 552 5.2.2 Over quota\r\n"
    let raw = "\
From: Mail Delivery Subsystem <MAILER-DAEMON@relay.example.net>
Subject: Returned mail
Content-Type: multipart/report; report-type=delivery-status; boundary=zz

--zz
Content-Type: text/plain

The message could not be delivered.
--zz
Content-Type: message/delivery-status
Content-Transfer-Encoding: base64

RmluYWwtUmVjaXBpZW50OiByZmM4MjI7IGRhdmVAZXhhbXBsZS5jb20NCkFjdGlvbjogZmFpbGVk
DQpTdGF0dXM6IDUuMi4yDQpEaWFnbm9zdGljLUNvZGU6IHNtdHA7IDU1MiA1LjIuMiBPdmVyIHF1
b3RhDQo=
--zz--
";
    let r = &bounce(raw).recipients[0];
    assert_eq!(r.address.as_deref(), Some("dave@example.com"));
    assert_eq!(r.status.as_deref(), Some("5.2.2"));
    assert_eq!(r.diagnostic.as_deref(), Some("552 5.2.2 Over quota"));
}

#[test]
fn fields_written_into_a_text_part() {
    let raw = "\
From: MAILER-DAEMON@ses.example.com
Subject: Delivery Status Notification (Failure)
Content-Type: multipart/mixed; boundary=mm

--mm
Content-Type: text/plain

An error occurred while trying to deliver the mail to the following recipients:
erin@example.com

Technical report:

Reporting-MTA: dsn; out.ses.example.com
Action: failed
Final-Recipient: rfc822; erin@example.com
Diagnostic-Code: smtp; 550 5.1.1 <erin@example.com>... User Unknown
Status: 5.1.1
--mm--
";
    let b = bounce(raw);
    assert_eq!(b.format, "rfc3464");
    let r = &b.recipients[0];
    assert_eq!(r.address.as_deref(), Some("erin@example.com"));
    assert_eq!(r.status.as_deref(), Some("5.1.1"));
    assert_eq!(r.diagnostic.as_deref(), Some("550 5.1.1 <erin@example.com>... User Unknown"));
}

#[test]
fn truncated_multiline_diagnostic_is_completed_from_the_transcript() {
    let raw = "\
From: Mail Delivery Subsystem <MAILER-DAEMON@mx.example.net>
Subject: Returned mail: see transcript for details
Content-Type: multipart/report; report-type=delivery-status; boundary=\"s/mx\"

--s/mx

   ----- The following addresses had permanent fatal errors -----
<frank@example.com>
    (reason: 552-5.7.0 This message was blocked because its content presents a potential)

   ----- Transcript of session follows -----
... while talking to mx.example.com.:
>>> DATA
<<< 552-5.7.0 This message was blocked because its content presents a potential
<<< 552-5.7.0 security issue. Please visit
<<< 552 5.7.0 https://support.example.com/answer to review our guidelines. - gsmtp
554 5.0.0 Service unavailable

--s/mx
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: RFC822; frank@example.com
Action: failed
Status: 5.7.0
Remote-MTA: DNS; mx.example.com
Diagnostic-Code: SMTP; 552-5.7.0 This message was blocked because its content presents a potential

--s/mx--
";
    let r = &bounce(raw).recipients[0];
    assert_eq!(
        r.diagnostic.as_deref(),
        Some(
            "552 5.7.0 This message was blocked because its content presents a potential security issue. \
             Please visit https://support.example.com/answer to review our guidelines. - gsmtp"
        )
    );
    assert_eq!(r.reply_code, Some(552));
}

#[test]
fn generic_field_diagnostic_gives_way_to_the_text() {
    let raw = "\
From: Mail Delivery Subsystem <MAILER-DAEMON@mx.example.net>
Subject: Returned mail: see transcript for details
Content-Type: multipart/report; report-type=delivery-status; boundary=\"q\"

--q

   ----- The following addresses had permanent fatal errors -----
<gina@example.net>
    (reason: Insufficient permission)

--q
Content-Type: message/delivery-status

Final-Recipient: RFC822; gina@example.net
Action: failed
Status: 5.3.0
Diagnostic-Code: X-Unix; 77

--q--
";
    let r = &bounce(raw).recipients[0];
    assert_eq!(r.diagnostic.as_deref(), Some("Insufficient permission"));
    assert_eq!(r.status.as_deref(), Some("5.3.0"));
}

#[test]
fn success_reports_stay_delivery_reports() {
    let raw = "\
From: MAILER-DAEMON@mx.example.net
Subject: Successful Mail Delivery Report
Content-Type: multipart/report; report-type=delivery-status; boundary=ok

--ok
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; hank@example.com
Action: delivered
Status: 2.0.0
Diagnostic-Code: smtp; 250 2.0.0 Ok: queued as 4ABC

--ok--
";
    let b = bounce(raw);
    assert_eq!(b.kind, ReportKind::Delivery);
    assert_eq!(b.recipients[0].action.as_deref(), Some("delivered"));
    assert_eq!(b.recipients[0].reply_code, Some(250));
}

#[test]
fn arf_feedback_report() {
    let raw = "\
From: feedback@isp.example
To: abuse@sender.example
Subject: Abuse report
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary=fb

--fb
Content-Type: text/plain

This is an email abuse report.
--fb
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: ExampleFBL/1.0
Version: 1
Original-Rcpt-To: <ivy@isp.example>
Reporting-MTA: dns; fbl.isp.example

--fb
Content-Type: message/rfc822

From: news@sender.example
To: ivy@isp.example
Subject: Offers

Buy now.
--fb--
";
    let b = bounce(raw);
    assert_eq!(b.kind, ReportKind::Feedback);
    assert!(!b.is_delivery_report());
    assert_eq!(b.recipients.len(), 1);
    assert_eq!(b.recipients[0].address.as_deref(), Some("ivy@isp.example"));
    assert_eq!(b.original.subject.as_deref(), Some("Offers"));
}

#[test]
fn rfc3834_auto_reply() {
    let raw = "\
From: Jane Doe <jane@example.com>
To: alice@example.org
Subject: Automatic reply: Quarterly report
Auto-Submitted: auto-replied

I am out of the office until Monday.
";
    let b = bounce(raw);
    assert_eq!(b.kind, ReportKind::AutoReply);
    assert_eq!(b.recipients[0].address.as_deref(), Some("jane@example.com"));
}

#[test]
fn a_bounce_is_not_an_auto_reply_even_when_marked_auto_replied() {
    // Postfix marks its bounces "Auto-Submitted: auto-replied".
    let raw = MULTI.replacen("MIME-Version: 1.0", "Auto-Submitted: auto-replied\nMIME-Version: 1.0", 1);
    assert_eq!(bounce(&raw).kind, ReportKind::Delivery);
}

#[test]
fn report_without_recipient_fields_names_the_returned_message_recipient() {
    let raw = "\
From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
Content-Type: multipart/report; report-type=delivery-status; boundary=\"r\"

--r
Content-Type: text/plain

\t--- Delivery report unavailable ---
--r
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

--r
Content-Type: message/rfc822

From: alice@example.org
To: kim@example.fr
Subject: Hi

Hi
--r--
";
    let b = bounce(raw);
    assert_eq!(b.recipients.len(), 1);
    assert_eq!(b.recipients[0].address.as_deref(), Some("kim@example.fr"));
}

#[test]
fn arf_report_naming_several_recipients() {
    let raw = "\
From: fbl@isp.example
Subject: FBL report
Content-Type: multipart/report; report-type=feedback-report; boundary=f2

--f2
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: ExampleFBL/1.0
Version: 1
Original-Rcpt-To: <una@isp.example>
Original-Rcpt-To: <vic@isp.example>

--f2--
";
    let b = bounce(raw);
    let addrs: Vec<&str> = b.recipients.iter().filter_map(|r| r.address.as_deref()).collect();
    assert_eq!(addrs, ["una@isp.example", "vic@isp.example"]);
    assert_eq!(b.recipients[0].diagnostic.as_deref(), Some("Feedback-Type: abuse"));
}

#[test]
fn complaint_reports_before_arf() {
    // Outlook.com / Amazon SES complaint reports: the complained-about message only.
    let raw = "\
From: complaints@email-abuse.example
Subject: complaint about message from 192.0.2.1
Content-Type: multipart/mixed; boundary=c

--c
Content-Type: message/rfc822

To: wes@example.net
From: news@sender.example
Subject: Deals

x
--c--
";
    let b = bounce(raw);
    assert_eq!(b.kind, ReportKind::Feedback);
    assert_eq!(b.recipients[0].address.as_deref(), Some("wes@example.net"));
}

#[test]
fn mail_client_unsubscribe_request() {
    let raw = "\
From: xena@mail.example
To: unsubscribe-123@list.example
Subject: unsubscribe
X-Apple-Unsubscribe: true

Apple Mail sent this email to unsubscribe from the message \"Weekly news\".
";
    let b = bounce(raw);
    assert_eq!(b.kind, ReportKind::Feedback);
    assert_eq!(b.recipients[0].address.as_deref(), Some("xena@mail.example"));
}
