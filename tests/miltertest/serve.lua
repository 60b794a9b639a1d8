-- plainbounce serve, driven by miltertest (OpenDKIM's libmilter-protocol client) as a
-- second, independent MTA-side implementation. Run by tests/milter_miltertest.rs:
--   miltertest -D socket=inet:PORT@127.0.0.1 -s tests/miltertest/serve.lua
-- The daemon runs with max_body = 2000.
--
-- No bounce is rewritten here: miltertest 2.11.0~beta2 (Debian 12) overflows a stack
-- buffer on a replace-body chunk over about 1 KB ("stack smashing detected"; measured
-- with a stand-in milter: 1,024 bytes pass, 1,500 crash), and the milter sends chunks of
-- up to 64 KB, as the protocol allows. Rewrites are checked with indymilter-test and the
-- real MTAs instead.

local function expect(what, got, want)
	if got ~= want then
		error(string.format("%s: reply %s, expected %s", what, tostring(got), tostring(want)))
	end
end

local function ok(what, err)
	if err ~= nil then
		error(what .. " failed: " .. err)
	end
end

local conn = mt.connect(socket, 40, 0.25)
if conn == nil then
	error("cannot connect to " .. socket)
end

-- Negotiation: only the header and body actions; no connect/helo stages (so no
-- mt.conninfo, which miltertest refuses once SMFIP_NOCONNECT is negotiated).
for _, action in ipairs({ SMFIF_ADDHDRS, SMFIF_CHGHDRS, SMFIF_CHGBODY }) do
	if not mt.test_action(conn, action) then
		error("action not negotiated: " .. action)
	end
end
for _, action in ipairs({ SMFIF_ADDRCPT, SMFIF_DELRCPT, SMFIF_CHGFROM, SMFIF_QUARANTINE }) do
	if mt.test_action(conn, action) then
		error("action negotiated but never used: " .. action)
	end
end
for _, option in ipairs({ SMFIP_NOCONNECT, SMFIP_NOHELO, SMFIP_NOEOH }) do
	if not mt.test_option(conn, option) then
		error("stage not skipped: " .. option)
	end
end

-- Ordinary mail is let go at MAIL FROM.
ok("mailfrom", mt.mailfrom(conn, "<someone@example.org>", "SIZE=100"))
expect("ordinary MAIL FROM", mt.getreply(conn), SMFIR_ACCEPT)

-- A null-sender message that is no bounce: taken, then passed unchanged.
local function plain_message(sender)
	ok("mailfrom", mt.mailfrom(conn, sender))
	expect("null MAIL FROM", mt.getreply(conn), SMFIR_CONTINUE)
	ok("rcptto", mt.rcptto(conn, "<alice@example.org>"))
	expect("RCPT TO", mt.getreply(conn), SMFIR_CONTINUE)
	ok("header", mt.header(conn, "From", "someone <someone@example.org>"))
	expect("header", mt.getreply(conn), SMFIR_CONTINUE)
	ok("header", mt.header(conn, "Subject", "hello"))
	expect("header", mt.getreply(conn), SMFIR_CONTINUE)
end

plain_message("<>")
ok("body", mt.bodystring(conn, "just some text\r\n"))
expect("body", mt.getreply(conn), SMFIR_CONTINUE)
ok("eom", mt.eom(conn))
expect("eom", mt.getreply(conn), SMFIR_CONTINUE)
if mt.eom_check(conn, MT_BODYCHANGE) or mt.eom_check(conn, MT_HDRADD) or mt.eom_check(conn, MT_HDRINSERT) or mt.eom_check(conn, MT_HDRCHANGE) then
	error("a message that is no bounce was modified")
end

-- Aborted mid-message, then the same connection carries on (Postfix's internal null
-- sender is an empty string).
plain_message("<>")
ok("abort", mt.abort(conn))
plain_message("")
ok("body", mt.bodystring(conn, "just some text\r\n"))
expect("body", mt.getreply(conn), SMFIR_CONTINUE)
ok("eom", mt.eom(conn))
expect("eom after abort", mt.getreply(conn), SMFIR_CONTINUE)

-- A body over max_body: the milter asks to skip the rest (or lets the message go).
plain_message("<>")
ok("body", mt.bodystring(conn, string.rep("x", 3000)))
local reply = mt.getreply(conn)
if reply ~= SMFIR_SKIP and reply ~= SMFIR_ACCEPT then
	error("body over the cap: reply " .. tostring(reply))
end
if reply == SMFIR_SKIP then
	ok("eom", mt.eom(conn))
	expect("eom over the cap", mt.getreply(conn), SMFIR_CONTINUE)
	if mt.eom_check(conn, MT_BODYCHANGE) then
		error("a message over the cap was modified")
	end
end

ok("disconnect", mt.disconnect(conn))
mt.echo("miltertest: all checks passed")
