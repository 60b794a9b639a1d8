//! Every reply code and message variant of the five seed documents in ../shared/seeds/,
//! with the cause it must be explained as. This table is the specification: it is
//! written from the documents, not from the TOML.
//!
//! Documents: 000 (SMTP error 553 and its variants), 001 (answersthatwork.com reference
//! 2010), 002 (rtfm.wiki, the Russian site's table and extended texts), 003 (the
//! "ESMTP Status/Error Codes" page 2/3), 004 (InMotion Hosting "Email error 553").

use plainbounce::classify::explain_text;
use plainbounce::kb::{KnowledgeBase, Query};
use std::sync::LazyLock;

static KB: LazyLock<KnowledgeBase> = LazyLock::new(|| KnowledgeBase::builtin().unwrap());

/// (document, text as it appears in the document, expected cause)
const TEXTS: &[(&str, &str, &str)] = &[
    // --- 000: SMTP error 553 --------------------------------------------------------------
    ("000", "Hi. This is the QMAIL-send program at 192.0.2.1. I'm afraid I wasn't able to deliver your message to the following addresses. This is a permanent error; I've given up. Sorry it didn't work out. <bob@example.com> : 192.0.2.2 does not like recipient. Remote host said: 553 5.3.0 <bob@example.com>. Addressee unknown. Giving up.", "user-unknown"),
    ("000", "553 sorry, relaying denied from your location", "relay-auth-required"),
    ("000", "5.5.0 smtp;553 sorry, that domain isn't allowed to be relayed thru this MTA (#5.7.1)", "relay-not-permitted"),
    ("000", "5.5.0 smtp;553 sorry, that domain isn't in my list of allowed rcpthosts", "relay-not-permitted"),
    // --- 004: InMotion "Email error 553" and its common variations ------------------------
    ("004", "SMTP error from remote mail server after RCPT TO:<recipient@RemoteDomain.com>: host RemoteDomain.com [123.123.123.123]: 553 5.7.1 Not an open relay, so get lost", "relay-auth-required"),
    ("004", "553 5.7.1 Not an open relay, so get lost", "relay-auth-required"),
    ("004", "553 Invalid user.", "user-unknown"),
    ("004", "553 message blocked, you are not authorized to send mail, authentication is required.", "auth-required"),
    ("004", "553 Null Sender is not allowed.", "sender-rejected"),
    ("004", "553 5.1.1 sorry, no mailbox here by that name.", "user-unknown"),
    ("004", "553 #5.1.8 Domain of sender address <sender@YourDomain.com> does not exist", "sender-domain-invalid"),
    ("004", "553 5.3.0 <recipient@RemoteDomain.com>... Address does not exist", "user-unknown"),
    ("004", "553 5.3.0 <recipient@RemoteDomain.com>... No such user", "user-unknown"),
    ("004", "553 5.3.0 <recipient@RemoteDomain.com>... No such user here", "user-unknown"),
    ("004", "553 5.3.0 <recipient@RemoteDomain.com>... User unknown, not local address", "user-unknown"),
    ("004", "553-Message filtered. Please see the FAQs section on spam", "spam-detected"),
    ("004", "553 <recipient@RemoteDomain.com> does not have a mailbox here", "user-unknown"),
    ("004", "553 RemoteDomain.com does not accept mail sent to recipient@OtherRemoteDomain.com", "relay-not-permitted"),
    ("004", "553 sorry, no mail-box here by that name. (#5.1.1)", "user-unknown"),
    ("004", "553 sorry, no mailbox here by that name (#5.1.1)", "user-unknown"),
    ("004", "553 sorry, rcpt user invalid (#5.7.1)", "user-unknown"),
    ("004", "553 sorry, that domain isn't in my list of allowed rcpthosts", "relay-not-permitted"),
    ("004", "553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)", "relay-not-permitted"),
    ("004", "553 sorry, the recipient in not a valid user on this domain (#5.7.1)", "user-unknown"),
    ("004", "553 sorry, this recipient doesn't exist.", "user-unknown"),
    ("004", "553 sorry, this recipient is not in my validrcptto list (#5.7.1)", "user-unknown"),
    ("004", "553 sorry, your envelope sender is in my badmailfrom list (#5.7.1)", "sender-blocked"),
    ("004", "553 Your email address is denied.", "sender-blocked"),
    // --- 001: answersthatwork.com reference -----------------------------------------------
    ("001", "SMTP error from remote mail server after end of data - 192.0.2.1 : 550 Error: Message content rejected", "spam-detected"),
    ("001", "SMTP error from remote mail server after RCPT TO <bob@example.com>, 550 5.1.1 User unknown", "user-unknown"),
    ("001", "SMTP Error: Data not accepted", "transaction-failed"),
    ("001", "SMTP Error: The following recipients failed", "mailbox-unavailable"),
    ("001", "SMTP Error 101, Error opening connection", "network-error"),
    ("001", "SMTP Error 101, cannot open SMTP stream", "network-error"),
    ("001", "Connection refused, 111 Can't open SMTP stream", "network-error"),
    ("001", "221 Goodbye", "protocol-status"),
    ("001", "221 Closing connection", "protocol-status"),
    ("001", "221 Bye", "protocol-status"),
    ("001", "221 Thank you for your business", "protocol-status"),
    ("001", "221 All messages processed successfully in this session, SMTP connection is closing", "protocol-status"),
    ("001", "250 Requested mail action OK completed", "delivered"),
    ("001", "251 User not local will forward", "delivered"),
    ("001", "252 Cannot VRFY (verify) the user - the server will accept the message and attempt to deliver it", "delivered"),
    ("001", "420 TCP Write Error", "network-error"),
    ("001", "420 TCP Read Error", "network-error"),
    ("001", "421 Too many concurrent SMTP connections from this IP address; please try again later", "too-many-connections"),
    ("001", "450 Please try again later", "service-unavailable"),
    ("001", "The message that you sent has been delayed. The reason given for the delay: 450 Host down (relay.clara.net)", "network-error"),
    ("001", "SMTP Error 450 5.2.3 Msg Size greater than allowed by Remote Host", "message-too-big-for-mailbox"),
    ("001", "SMTP error 451 Unable to complete command, DNS not available or timed out", "dns-failure"),
    ("001", "451 Domain of sender address does not resolve", "sender-domain-invalid"),
    ("001", "451 Error getting LDAP results in map", "remote-system-error"),
    ("001", "451 4.7.1 Greylisting in action, please come back in 00:02:00", "greylisted"),
    ("001", "The message that you sent has been delayed. The reason given for the delay : 451 Temporary local problem - please try later.", "remote-system-error"),
    ("001", "SMTP error from remote mail server after end of data, host mx.example.com: 451 192.0.2.1 has recently sent spam. If you are not a spammer, please try later.", "bad-reputation"),
    ("001", "432 4.3.2 The recipient's Exchange Server incoming mail queue has been stopped", "service-unavailable"),
    ("001", "452 Out of memory", "system-full"),
    ("001", "465 SMTP: Invalid response code received from server", "auth-failed"),
    ("001", "465 Code Page unavailable on the recipient server", "media-unsupported"),
    ("001", "SMTP Permanent Error: 500 Access Denied By Port Access", "protocol-error"),
    ("001", "SMTP Error 500 Line too long", "protocol-error"),
    ("001", "192.0.2.1 does not like recipient. Remote host said: 501 Invalid Address", "recipient-address-invalid"),
    ("001", "501 5.5.4 Invalid Address", "recipient-address-invalid"),
    ("001", "SMTP Error (state 13): 503 This mail server requires authentication when attempting to send to a non-local e-mail address. Please check your mail client settings or contact your administrator to verify that the domain or address is defined for this server.", "auth-required"),
    ("001", "504 Need to authenticate first", "auth-required"),
    ("001", "511 sorry, recipient address has invalid format", "recipient-address-invalid"),
    ("001", "5.1.2 - Bad destination host 'DNS Hard Error looking up domain'", "host-unknown"),
    ("001", "SMTP Error 550 5.1.2 Host unknown - host cannot be found", "host-unknown"),
    ("001", "5.1.2 The message could not be delivered because the recipient's destination email system is unknown or invalid. Please check the address and try again, or contact your system administrator to verify connectivity to the email system of the recipient.", "host-unknown"),
    ("001", "SMTP error 501 5.1.3 Invalid address", "recipient-address-invalid"),
    ("001", "SMTP error 553 5.1.3 User address required !", "recipient-address-invalid"),
    ("001", "SMTP error 501 5.1.3 Bad recipient address syntax", "recipient-address-invalid"),
    ("001", "SMTP error 513 Relaying Denied - Can not send e-mails to some addresses", "relay-not-permitted"),
    ("001", "SMTP error 550 5.1.3 STOREDRV.Submit; invalid recipient address. Delivery has failed to these recipients or distribution lists: The format of the recipient's e-mail address isn't valid. A valid address looks like this: username@microsoft.com. Microsoft Exchange will not try to redeliver this message for you.", "recipient-address-invalid"),
    ("001", "SMTP error 553 Authentication is required to send mail as username@ispdomainname.com", "auth-required"),
    ("001", "SMTP Error 450 5.2.3 Msg Size greater than allowed by Remote Host", "message-too-big-for-mailbox"),
    ("001", "SMTP Error 552 5.2.3 Data size exceeds maximum permitted", "message-too-big-for-mailbox"),
    ("001", "SMTP Error 552 5.2.3 Message exceeds maximum fixed size", "message-too-big-for-mailbox"),
    ("001", "530 Authentication is required", "auth-required"),
    ("001", "530, response: 5.7.0 Must issue a STARTTLS command first", "starttls-required"),
    ("001", "SMTP error 530 : The message cannot be delivered due to a configuration error on the server. Please contact your Administrator.", "transaction-failed"),
    ("001", "554 this user doesn't have a Yahoo.com account", "user-unknown"),
    ("001", "SMTP error from remote mail server - 550 5.4.1 billing@thatcompany.com : Recipient address rejected - Access Denied", "user-unknown"),
    ("001", "#5.5.0 smtp;541 Internet Security Systems' Proventia(TM) intrusion prevention appliance blocked forwarding of message", "message-filtered"),
    ("001", "550 Invalid recipient", "user-unknown"),
    ("001", "550 User account is unavailable", "user-unknown"),
    ("001", "192.0.2.1 does not like recipient - 550 Address rejected", "user-unknown"),
    ("001", "550 No such user here", "user-unknown"),
    ("001", "550 Not our Customer", "user-unknown"),
    ("001", "550 Account not available", "user-unknown"),
    ("001", "Remote host said : 550 - Barack.Obama@ThisCompany.com, this THISCOMPANY.COM Mailbox Does Not Exist - Giving up", "user-unknown"),
    ("001", "240.240.240.240 does not like recipient. Remote host said: 550-Verification failed for John.Doe@YourDomain.com 550-Previous (cached) callout verification failure 550 Sender verify failed Giving up on 240.240.240.240.", "sender-verify-failed"),
    ("001", "Command: Data... Response: 550 Cyberoam Anti Spam Engine has identified this email as a spam. Ref-id:str=0001.0A0B0206.4BA7422C.01F5,ss=1,vtr=str,vl=0", "spam-detected"),
    ("001", "I'm afraid I wasn't able to deliver your message to the following addresses. This is a permanent error; I've given up. Sorry it didn't work out. <bob@example.com>: 192.0.2.1 does not like recipient. Remote host said: 550 [SUSPEND] Mailbox currently suspended - Please contact correspondent directly.", "mailbox-disabled"),
    ("001", "550 mailbox temporarily disabled", "mailbox-disabled"),
    ("001", "550-Verification failed for my@exchangeserver.com - 550-Unrouteable address - 550 Sender verify failed (in reply to RCPT TO command)", "sender-verify-failed"),
    ("001", "Mailbox is inactive", "mailbox-inactive"),
    ("001", "5.1.0 - Unknown address error 550-'Mailbox is inactive", "mailbox-inactive"),
    ("001", "A message that you sent could not be delivered to one or more of its recipients. This is a permanent error. The following address(es) failed : bob@example.com Mailbox is inactive", "mailbox-inactive"),
    ("001", "551 User not local, please try <forward-path>", "mailbox-moved"),
    ("001", "552 sorry, mailbox Alan@ThisCompany.com is over quota temporarily (#5.1.1)", "mailbox-full"),
    ("001", "SMTP Error 552 5.2.3 Message size exceeds fixed maximum message size (7000000)", "message-too-big-for-mailbox"),
    ("001", "554 delivery error: This user doesn't have a Yahoo.com account", "user-unknown"),
    ("001", "554 delivery error: Sorry your message to bob@yahoo.com cannot be delivered. This account has been disabled or discontinued", "mailbox-disabled"),
    ("001", "Username@comcast.net SMTP error from remote mail server after initial connection : host mx2.comcast.net : 554 IMTA11.emeryville.ca.mail.comcast.net 192.0.2.1 was found on one or more DNSBLs, see http://help.comcast.net/content/faq/BL000010", "ip-blocklisted"),
    ("001", "SMTP error from remote mail server after initial connection to host mx1.ozemail.com.au : 554 filter.ozemail.com.au", "transaction-failed"),
    ("001", "SMTP error: Email Error: RCPT TO invalid mail server response: 554 5.7.1 : Recipient address rejected", "delivery-not-authorized"),
    ("001", "240.240.240.240 does not like recipient. Remote host said: 550-Verification failed for John.Doe@YourDomain.com 550-Called: 250.250.250.250 550-Sent: RCPT TO:John.Doe@YourDomain.com 550-Response: 554 : Service unavailable; Client host [server11.virgohosting.net] blocked using Barracuda Reputation; http://recipientdomain.barracudacentral.com/q.cgi?ip=230.230.230 550 Sender verify failed Giving up on 240.240.240.240", "blocklist-barracuda"),
    ("001", "UP Email not accepted for policy reasons. Please visit http://help.yahoo.com/help/us/mail/defer/defer-04.html", "policy-rejected"),
    ("001", "554 Your access to this mail system has been rejected due to the sending MTA's poor reputation. If you believe that this failure is in error, please contact the intended recipient via alternate means.", "bad-reputation"),
    ("001", "5.5.0 SMTP; 571 Delivery not authorized, message refused", "delivery-not-authorized"),
    ("001", "550 5.7.1 Mail from Ip Address refused by blackhole site dialups.mail-abuse.org", "ip-blocklisted"),
    ("001", "571 email address we do not relay", "relay-not-permitted"),
    ("001", "550 5.7.1 Relaying prohibited", "relay-not-permitted"),
    ("001", "The following addresses had permanent delivery errors", "user-unknown"),
    ("001", "The following address had permanent delivery errors", "user-unknown"),
    // --- 002: rtfm.wiki extended descriptions ----------------------------------------------
    ("002", "550 5.1.1 Recipient address rejected: User unknown in virtual alias table", "user-unknown"),
    ("002", "550 5.1.1 Protocol error", "protocol-error"),
    ("002", "550 5.3.2 Service currently unavailable", "service-unavailable"),
    ("002", "554 5.7.1 Service unavailable; Client host X.X.X.X blocked using zen.spamhaus.org", "blocklist-spamhaus"),
    ("002", "550 5.7.1 : Helo command rejected: You aren't localhost", "helo-rejected"),
    ("002", "550 5.7.1 : Helo command rejected: You aren't localhost.localdomain.", "helo-rejected"),
    ("002", "550 5.7.1 : Helo command rejected: You are not me", "helo-rejected"),
    ("002", "554 5.7.1 : Relay access denied", "relay-not-permitted"),
    ("002", "551 5.7.1 The message was rejected due to classification as Virus,Spam or high bulk ratio", "spam-detected"),
    ("002", "530 5.7.0 Recipient address rejected: Authentication Required", "auth-required"),
    ("002", "550 5.4.5 Recipient address rejected: Hourly domain sending quota exceeded", "sending-limit"),
    ("002", "550 5.4.6 Recipient address rejected: Hourly sending quota exceeded", "sending-limit"),
    ("002", "553 5.7.1 Sender address rejected: not owned by user user@domain.com", "sender-not-owned"),
    ("002", "554 5.7.1 : Recipient address rejected: USER IS SUSPENDED", "mailbox-disabled"),
    ("002", "522 5.7.1 : Recipient address rejected: Requested mail action aborted: exceeded storage allocation", "mailbox-full"),
    ("002", "554 5.7.1 : Sender address rejected: Access denied", "sender-blocked"),
    ("002", "450 4.1.8 : Sender address rejected: Domain not found", "sender-domain-invalid"),
    ("002", "450 4.7.1 Client host rejected: cannot find your reverse hostname", "reverse-dns-missing"),
    ("002", "450 4.7.1 : Recipient address rejected: Policy Rejection- Quota Exceeded", "recipient-rate-limited"),
    ("002", "450 4.7.1 Recipient address rejected: Access denied", "user-unknown"),
    ("002", "451 4.3.5 Server configuration problem - try again later", "remote-system-error"),
    ("002", "451 4.7.1 Service unavailable - try again later;", "service-unavailable"),
    ("002", "452 4.5.3 Error: too many recipients", "too-many-recipients"),
    // --- 003: "New enhanced ESMTP Status/Error Codes" page ---------------------------------
    ("003", "452 too many messages", "rate-limited"),
    ("003", "550 Relaying prohibited or Not local host... not a gateway or Unable to relay for bob@example.com", "relay-not-permitted"),
    ("003", "550 Requested action not taken: mailbox unavailable", "mailbox-unavailable"),
    ("003", "551 Invalid Address: Relay request denied", "relay-not-permitted"),
    ("003", "553 Denied. Requested action not taken: mailbox name not allowed", "recipient-address-invalid"),
    ("003", "554 Transaction failed", "transaction-failed"),
    ("003", "557 Too many duplicate messages: Resource temporarily unavailable", "rate-limited"),
    ("003", "572 Relay not authorized or Not local host... not a gateway", "relay-not-permitted"),
    ("003", "521 You must be pop-authenticated before you can use this SMTP server", "auth-required"),
];

/// (document, reply code, expected cause): codes the documents describe by number. Looked
/// up by code alone, so that codes the text scanner does not take for reply codes
/// (1xx, 3xx, 465, 471, 57x) are covered as well.
const CODES: &[(&str, u16, &str)] = &[
    ("001", 101, "network-error"),
    ("001", 111, "network-error"),
    ("003", 200, "delivered"),
    ("001", 211, "protocol-status"),
    ("001", 214, "protocol-status"),
    ("001", 220, "protocol-status"),
    ("001", 221, "protocol-status"),
    ("001", 250, "delivered"),
    ("001", 251, "delivered"),
    ("001", 252, "delivered"),
    ("001", 354, "protocol-status"),
    ("001", 420, "network-error"),
    ("001", 421, "service-unavailable"),
    ("001", 422, "mailbox-full"),
    ("001", 431, "system-full"),
    ("001", 432, "password-change-needed"),
    ("001", 441, "network-error"),
    ("001", 442, "network-error"),
    ("001", 446, "mail-loop"),
    ("001", 447, "network-error"),
    ("001", 449, "remote-system-error"),
    ("001", 450, "mailbox-unavailable"),
    ("001", 451, "remote-system-error"),
    ("001", 452, "system-full"),
    ("001", 465, "media-unsupported"),
    ("001", 471, "local-filter-error"),
    ("001", 500, "protocol-error"),
    ("001", 501, "protocol-error"),
    ("001", 502, "protocol-error"),
    ("001", 503, "protocol-error"),
    ("001", 504, "protocol-error"),
    ("001", 510, "user-unknown"),
    ("001", 511, "user-unknown"),
    ("001", 512, "host-unknown"),
    ("001", 513, "recipient-address-invalid"),
    ("003", 521, "no-mail-domain"),
    ("002", 522, "mailbox-full"),
    ("001", 523, "message-too-big"),
    ("001", 530, "auth-required"),
    ("001", 541, "message-filtered"),
    ("001", 550, "mailbox-unavailable"),
    ("001", 551, "mailbox-moved"),
    ("001", 552, "mailbox-full"),
    ("001", 553, "recipient-address-invalid"),
    ("001", 554, "transaction-failed"),
    ("003", 557, "rate-limited"),
    ("001", 570, "delivery-not-authorized"),
    ("001", 571, "delivery-not-authorized"),
    ("003", 572, "relay-auth-required"),
];

#[test]
fn every_seed_variant_is_explained() {
    let mut wrong = Vec::new();
    for (doc, text, want) in TEXTS {
        let e = explain_text(&KB, text);
        if e.cause.id != *want {
            wrong.push(format!("[{doc}] {text:?}: got {} via {}, want {want}", e.cause.id, e.matched()));
        }
    }
    assert!(wrong.is_empty(), "{} of {} seed variants wrong:\n{}", wrong.len(), TEXTS.len(), wrong.join("\n"));
}

#[test]
fn every_seed_code_has_its_rule() {
    let mut wrong = Vec::new();
    for (doc, code, want) in CODES {
        let q = Query { reply_code: Some(*code), text: "", ..Query::default() };
        match KB.lookup(&q) {
            Some(m) if m.cause.id == *want && m.rule.id == format!("rfc5321-{code}") => {}
            Some(m) => wrong.push(format!("[{doc}] {code}: {} via {}, want {want}", m.cause.id, m.rule.id)),
            None => wrong.push(format!("[{doc}] {code}: no rule")),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn seed_codes_written_as_replies_are_found_in_text() {
    // Where the text scanner recognises the code, a bare reply gives the same answer.
    for (_, code, want) in CODES.iter().filter(|(_, c, _)| plainbounce::codes::reply_code(&c.to_string()).is_some()) {
        let e = explain_text(&KB, &code.to_string());
        assert_eq!(e.cause.id, *want, "{code}");
    }
}
