//! Just enough STUN (RFC 5389) to route a first binding request to its peer: the USERNAME
//! attribute's local half names the peer connection (its ICE ufrag), so one lookup finds it.

/// The magic cookie every RFC 5389 message carries at bytes 4..8.
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const ATTR_USERNAME: u16 = 0x0006;
const HEADER_LEN: usize = 20;

/// What a datagram on the media port is, by its first byte (RFC 7983 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatagramKind {
    /// STUN (ICE connectivity checks).
    Stun,
    /// DTLS (handshake, SCTP data channel).
    Dtls,
    /// SRTP or SRTCP.
    Rtp,
    /// Anything else: dropped.
    Unknown,
}

/// Classifies a datagram by its first byte.
pub fn classify(datagram: &[u8]) -> DatagramKind {
    match datagram.first() {
        Some(0..=3) => DatagramKind::Stun,
        Some(20..=63) => DatagramKind::Dtls,
        Some(128..=191) => DatagramKind::Rtp,
        _ => DatagramKind::Unknown,
    }
}

/// The local ufrag named by a STUN message's USERNAME (`local:remote`), if the datagram is a
/// well-formed STUN message that carries one. Never panics on any input.
pub fn local_ufrag(datagram: &[u8]) -> Option<&str> {
    if datagram.len() < HEADER_LEN || classify(datagram) != DatagramKind::Stun || datagram[4..8] != MAGIC_COOKIE {
        return None;
    }
    let body_len = u16::from_be_bytes([datagram[2], datagram[3]]) as usize;
    let body = datagram.get(HEADER_LEN..HEADER_LEN + body_len)?;
    let mut rest = body;
    while rest.len() >= 4 {
        let typ = u16::from_be_bytes([rest[0], rest[1]]);
        let len = u16::from_be_bytes([rest[2], rest[3]]) as usize;
        let value = rest.get(4..4 + len)?;
        if typ == ATTR_USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            let local = username.split(':').next()?;
            return (!local.is_empty()).then_some(local);
        }
        let padded = 4 + len.div_ceil(4) * 4;
        rest = rest.get(padded..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding_request(username: &[u8]) -> Vec<u8> {
        let mut attrs = Vec::new();
        // A PRIORITY attribute first, so the parser must skip one.
        attrs.extend_from_slice(&[0x00, 0x24, 0x00, 0x04, 1, 2, 3, 4]);
        attrs.extend_from_slice(&ATTR_USERNAME.to_be_bytes());
        attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attrs.extend_from_slice(username);
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&attrs);
        m
    }

    #[test]
    fn finds_the_local_ufrag() {
        assert_eq!(local_ufrag(&binding_request(b"srvUfrag:cli")), Some("srvUfrag"));
        assert_eq!(local_ufrag(&binding_request(b"abc:defg1")), Some("abc"));
    }

    #[test]
    fn rejects_what_is_not_a_usable_binding_request() {
        assert_eq!(local_ufrag(&binding_request(b":cli")), None);
        let mut no_cookie = binding_request(b"a:b");
        no_cookie[4] = 0;
        assert_eq!(local_ufrag(&no_cookie), None);
        let full = binding_request(b"someufrag:other");
        for cut in 0..full.len() {
            let _ = local_ufrag(&full[..cut]); // truncations never panic
        }
        let mut lying = full.clone();
        lying[3] = 0xff; // body length beyond the datagram
        assert_eq!(local_ufrag(&lying), None);
        let mut bad_attr = full;
        bad_attr[HEADER_LEN + 3] = 0xff; // first attribute claims a huge length
        assert_eq!(local_ufrag(&bad_attr), None);
        assert_eq!(local_ufrag(&[0x80; 40]), None);
    }

    #[test]
    fn classifies_by_first_byte() {
        assert_eq!(classify(&[0x00]), DatagramKind::Stun);
        assert_eq!(classify(&[22]), DatagramKind::Dtls);
        assert_eq!(classify(&[0x80]), DatagramKind::Rtp);
        assert_eq!(classify(&[0xff]), DatagramKind::Unknown);
        assert_eq!(classify(&[]), DatagramKind::Unknown);
    }
}
