//! Netstring codec of the socketmap server.

use plainbounce::socketmap::{decode, encode, NetstringError, MAX_REQUEST};

#[test]
fn encodes() {
    assert_eq!(encode(b"footer key"), b"10:footer key,");
    assert_eq!(encode(b""), b"0:,");
}

#[test]
fn round_trip() {
    for payload in [&b""[..], b"x", b"footer 554 5.7.1 <bob@example.net>: Relay access denied", &[0u8, 255, b',', b':']] {
        let mut buf = encode(payload);
        assert_eq!(decode(&mut buf, MAX_REQUEST), Ok(Some(payload.to_vec())));
        assert!(buf.is_empty());
    }
}

#[test]
fn partial_reads_wait_for_more() {
    let whole = encode(b"footer 550 5.1.1 <x@y>: User unknown");
    let mut buf = Vec::new();
    for (i, &b) in whole.iter().enumerate() {
        assert_eq!(decode(&mut buf, MAX_REQUEST), Ok(None), "complete after {i} bytes?");
        buf.push(b);
    }
    assert_eq!(decode(&mut buf, MAX_REQUEST), Ok(Some(b"footer 550 5.1.1 <x@y>: User unknown".to_vec())));
    assert!(buf.is_empty());
}

#[test]
fn pipelined_requests_come_out_in_order() {
    let mut buf = [encode(b"footer a"), encode(b"footer bb"), encode(b"footer ccc")].concat();
    buf.extend_from_slice(b"5:foo"); // start of a fourth one
    assert_eq!(decode(&mut buf, MAX_REQUEST), Ok(Some(b"footer a".to_vec())));
    assert_eq!(decode(&mut buf, MAX_REQUEST), Ok(Some(b"footer bb".to_vec())));
    assert_eq!(decode(&mut buf, MAX_REQUEST), Ok(Some(b"footer ccc".to_vec())));
    assert_eq!(decode(&mut buf, MAX_REQUEST), Ok(None));
    assert_eq!(buf, b"5:foo");
    buf.extend_from_slice(b"ba,");
    assert_eq!(decode(&mut buf, MAX_REQUEST), Ok(Some(b"fooba".to_vec())));
}

#[test]
fn oversized_length_is_refused_before_the_payload() {
    let mut buf = b"100001:".to_vec();
    assert_eq!(decode(&mut buf, MAX_REQUEST), Err(NetstringError::TooLong { len: 100001, max: MAX_REQUEST }));
    // Already while the digits arrive.
    let mut buf = b"9999999".to_vec();
    assert!(matches!(decode(&mut buf, MAX_REQUEST), Err(NetstringError::TooLong { .. })));
    let mut buf = b"11:hello world,".to_vec();
    assert_eq!(decode(&mut buf, 10), Err(NetstringError::TooLong { len: 11, max: 10 }));
    // The limit itself is fine.
    let mut buf = encode(&vec![b'a'; MAX_REQUEST]);
    assert_eq!(decode(&mut buf, MAX_REQUEST).unwrap().map(|p| p.len()), Some(MAX_REQUEST));
}

#[test]
fn bad_lengths() {
    for bad in [&b"x:abc,"[..], b":abc,", b"3x:abc,", b"-3:abc,", b" 3:abc,", b"GET / HTTP/1.0\r\n"] {
        let mut buf = bad.to_vec();
        assert_eq!(decode(&mut buf, MAX_REQUEST), Err(NetstringError::BadLength), "{:?}", String::from_utf8_lossy(bad));
    }
    // Endless leading zeros are cut off.
    let mut buf = b"00000000000000000003:abc,".to_vec();
    assert_eq!(decode(&mut buf, MAX_REQUEST), Err(NetstringError::BadLength));
    // A few leading zeros are accepted, like Postfix does.
    let mut buf = b"003:abc,".to_vec();
    assert_eq!(decode(&mut buf, MAX_REQUEST), Ok(Some(b"abc".to_vec())));
}

#[test]
fn missing_comma() {
    let mut buf = b"3:abc;".to_vec();
    assert_eq!(decode(&mut buf, MAX_REQUEST), Err(NetstringError::MissingComma));
    let mut buf = b"3:abcd,".to_vec();
    assert_eq!(decode(&mut buf, MAX_REQUEST), Err(NetstringError::MissingComma));
    // Too short is not an error yet: more may come.
    let mut buf = b"3:ab".to_vec();
    assert_eq!(decode(&mut buf, MAX_REQUEST), Ok(None));
}
