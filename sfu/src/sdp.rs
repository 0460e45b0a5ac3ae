//! SDP text the core adjusts or reads beside str0m: a player's offer made receive-only, the
//! Opus parameters asked of publishers, and the m-lines of an answer.

use str0m::Rtc;
use str0m::media::{MediaKind, Mid};

/// What the server asks of a publisher's Opus (RFC 7587): speech at about 24 kbit/s, silence
/// suppressed (DTX) and in-band FEC, so audio keeps its place on a 64 kbit/s link.
pub(crate) const OPUS_PARAMS: &str = "minptime=10;useinbandfec=1;usedtx=1;maxaveragebitrate=24000";

/// The offer of a player with every sending direction turned off (`sendrecv` → `recvonly`,
/// `sendonly` → `inactive`), so the answer never accepts media from it.
pub(crate) fn receive_only(offer: &str) -> String {
    offer
        .split_inclusive('\n')
        .map(|line| match line.trim_end() {
            "a=sendrecv" => line.replacen("a=sendrecv", "a=recvonly", 1),
            "a=sendonly" => line.replacen("a=sendonly", "a=inactive", 1),
            _ => line.to_owned(),
        })
        .collect()
}

/// The addresses of the relayed (TURN) candidates in an SDP or one `candidate:` line: media
/// from them went through a relay.
pub(crate) fn relay_addrs(sdp: &str) -> Vec<std::net::SocketAddr> {
    sdp.lines()
        .map(|l| {
            let l = l.trim();
            l.strip_prefix("a=").unwrap_or(l)
        })
        .filter(|l| l.starts_with("candidate:") && l.contains(" typ relay"))
        .filter_map(|l| str0m::Candidate::from_sdp_string(l).ok())
        .map(|c| c.addr())
        .collect()
}

/// The `(mid, kind)` of the answered audio/video m-lines that can carry media the wanted way.
pub(crate) fn usable_media(rtc: &Rtc, answer: &str, publishing: bool) -> Vec<(Mid, MediaKind)> {
    let mut usable = Vec::new();
    for (mid, kind) in media_lines(answer) {
        let Some(media) = rtc.media(mid) else { continue };
        let sends = media.direction().is_sending();
        let receives = media.direction().is_receiving();
        if media.disabled() || media.remote_pts().is_empty() || (publishing && !receives) || (!publishing && !sends) {
            continue;
        }
        usable.push((mid, kind));
    }
    usable
}

pub(crate) fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).chars().take(200).collect()
}

/// The `(mid, kind)` of each audio/video m-line of an SDP, in order.
pub(crate) fn media_lines(sdp: &str) -> Vec<(Mid, MediaKind)> {
    let mut out = Vec::new();
    let mut kind = None;
    for line in sdp.lines() {
        if let Some(rest) = line.strip_prefix("m=") {
            kind = match rest.split(' ').next() {
                Some("audio") => Some(MediaKind::Audio),
                Some("video") => Some(MediaKind::Video),
                _ => None,
            };
        } else if let (Some(k), Some(mid)) = (kind, line.strip_prefix("a=mid:")) {
            out.push((Mid::from(mid.trim()), k));
        }
    }
    out
}

/// An answer to a publisher with [`OPUS_PARAMS`] on every Opus payload type.
pub(crate) fn tune_opus(answer: &str) -> String {
    let opus_pts: Vec<&str> = answer
        .lines()
        .filter_map(|l| l.strip_prefix("a=rtpmap:"))
        .filter_map(|r| r.split_once(' '))
        .filter(|(_, codec)| codec.to_ascii_lowercase().starts_with("opus/"))
        .map(|(pt, _)| pt)
        .collect();
    answer
        .split_inclusive('\n')
        .map(|line| {
            let body = line.trim_end_matches(['\r', '\n']);
            match body.strip_prefix("a=fmtp:").and_then(|r| r.split_once(' ')) {
                Some((pt, _)) if opus_pts.contains(&pt) => format!("a=fmtp:{pt} {OPUS_PARAMS}{}", &line[body.len()..]),
                _ => line.to_owned(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_lines_are_read_in_order() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\nm=video 9 UDP/TLS/RTP/SAVPF 108\r\na=mid:1\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:2\r\n";
        let lines = media_lines(sdp);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].1, MediaKind::Audio);
        assert_eq!(lines[1].1, MediaKind::Video);
    }

    #[test]
    fn publishers_are_asked_for_speech_sized_opus_and_nothing_else_changes() {
        let answer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n\
                      m=video 9 UDP/TLS/RTP/SAVPF 108\r\na=rtpmap:108 H264/90000\r\na=fmtp:108 profile-level-id=42e01f\r\n";
        let tuned = tune_opus(answer);
        assert!(tuned.contains("a=fmtp:111 minptime=10;useinbandfec=1;usedtx=1;maxaveragebitrate=24000\r\n"), "{tuned}");
        assert!(tuned.contains("a=fmtp:108 profile-level-id=42e01f\r\n"), "video untouched: {tuned}");
        assert_eq!(tuned.lines().count(), answer.lines().count());
        assert_eq!(receive_only("a=sendrecv\r\na=sendonly\r\n"), "a=recvonly\r\na=inactive\r\n");
    }

    #[test]
    fn relayed_candidates_are_found_in_an_sdp_or_a_trickled_line() {
        let sdp = "v=0\r\na=candidate:1 1 udp 2122260223 192.0.2.7 50000 typ host\r\n\
                   a=candidate:2 1 udp 41885439 198.51.100.3 49170 typ relay raddr 192.0.2.7 rport 50000\r\n";
        assert_eq!(relay_addrs(sdp), ["198.51.100.3:49170".parse::<std::net::SocketAddr>().unwrap()]);
        let line = "candidate:3 1 tcp 8331263 198.51.100.4 443 typ relay raddr 0.0.0.0 rport 0 tcptype passive";
        assert_eq!(relay_addrs(line).len(), 1);
        assert!(relay_addrs("a=candidate:1 1 udp 2122260223 192.0.2.7 50000 typ host\r\n").is_empty());
    }
}
