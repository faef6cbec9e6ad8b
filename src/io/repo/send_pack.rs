//! The transport-independent half of git's receive-pack protocol v0 (`gitprotocol-pack.txt`),
//! as provisio's send-pack clients ([`super::send_http`], [`super::send_ssh`]) speak it: pkt-lines,
//! the reference advertisement, the update command, the side band and the report-status. No
//! I/O of its own: functions over `Read` and byte slices; how the bytes travel is each
//! client's.
//!
//! - **pkt-lines** are read by the few lines of [`read_pkt`] rather than through
//!   `gix-packetline`: v0 needs only data and flush packets, every length is checked against
//!   65520 (`LARGE_PACKET_MAX`) before anything is read, and the crate would bring gitoxide's
//!   feature plumbing for about forty lines.
//! - **The answer** to the command and pack is the report (`unpack ok`, then `ok <ref>` or
//!   `ng <ref> <reason>`, classified by [`super::failure::refusal`]), on side band 1 when
//!   `side-band-64k` was asked for, with the hooks' output on band 2 (kept for the refusal's
//!   message) and a fatal error on band 3 ([`read_outcome`]).

use std::io::{self, Read};

use super::failure::{PushFailure, refusal};
use super::{Oid, RemoteError};

/// The longest pkt-line, its 4 length bytes included (git's `LARGE_PACKET_MAX`).
pub(super) const MAX_PKT_LEN: usize = 65520;
/// The object id of "no object": the old value of a branch being created.
pub(super) const ZERO_ID: &str = "0000000000000000000000000000000000000000";
/// The most of the report (side band 1) read: a few lines for one command.
const MAX_REPORT: usize = 1 << 20;
/// The most of the remote's messages (side band 2) kept for a refusal's message.
const MAX_MESSAGES: usize = 4096;

/// What the advertisement says for one push.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Advertisement {
    /// The branch's value on the remote; None when it has no such branch.
    pub(super) current: Option<Oid>,
    pub(super) capabilities: Vec<String>,
}

impl Advertisement {
    pub(super) fn has(&self, capability: &str) -> bool {
        self.capabilities.iter().any(|c| c == capability)
    }
}

/// Why the advertisement `adv` rules a push out, if it does: no `report-status` (the outcome
/// could not be known) or object ids other than sha1 (provisio writes sha1).
pub(super) fn unusable(adv: &Advertisement) -> Option<String> {
    if !adv.has("report-status") {
        return Some(
            "the server does not offer `report-status`: provisio could not know whether its push landed".into(),
        );
    }
    adv.capabilities
        .iter()
        .find_map(|c| c.strip_prefix("object-format="))
        .filter(|f| *f != "sha1")
        .map(|format| format!("the repository uses {format} object ids; provisio writes sha1"))
}

/// Reads the answer to the command and pack sent (its report, through the side band when
/// `sideband` was asked for) and returns what it says of `refname` of the remote `url`.
pub(super) fn read_outcome(
    r: &mut dyn Read,
    sideband: bool,
    url: &str,
    refname: &str,
) -> Result<(), PushFailure> {
    let (report, messages) = if sideband {
        match demultiplex(r).map_err(|e| wire(url, e))? {
            Demuxed::Report { report, .. } if report.is_empty() => {
                return Err(wire(
                    url,
                    Wire::Malformed("the answer holds no report (nothing on side band 1)".into()),
                ));
            }
            Demuxed::Report { report, messages } => (report, messages),
            Demuxed::Fatal { message, messages } => {
                let message = with_messages(format!("the remote failed: {message}"), &messages);
                return Err(refusal(url, refname.to_owned(), message));
            }
        }
    } else {
        let mut report = Vec::new();
        (&mut *r)
            .take(MAX_REPORT as u64 + 1)
            .read_to_end(&mut report)
            .map_err(|e| wire(url, Wire::Io(e)))?;
        (report, String::new())
    };
    match read_report(&mut report.as_slice(), refname).map_err(|e| wire(url, e))? {
        Report::Ok => Ok(()),
        Report::Unpack(reason) => Err(PushFailure::Refused {
            refname: refname.to_owned(),
            message: with_messages(
                format!("the remote could not unpack the pack: {reason}"),
                &messages,
            ),
        }),
        Report::Ng(reason) => match refusal(url, refname.to_owned(), reason) {
            PushFailure::Refused { refname, message } => Err(PushFailure::Refused {
                refname,
                message: with_messages(message, &messages),
            }),
            other => Err(other),
        },
    }
}

/// A failure while reading an answer of the remote `url`: the connection failing is
/// transient, an answer breaking git's protocol is not.
pub(super) fn wire(url: &str, e: Wire) -> PushFailure {
    PushFailure::Remote(match e {
        Wire::Io(e) => RemoteError::Network {
            url: url.to_owned(),
            source: Box::new(e),
        },
        Wire::Malformed(reason) => RemoteError::Protocol {
            url: url.to_owned(),
            reason,
        },
    })
}

/// The request's start: the update command with the capabilities asked for, and a flush.
pub(super) fn command_pkts(
    adv: &Advertisement,
    refname: &str,
    new: Oid,
    sideband: bool,
) -> Vec<u8> {
    let old = adv
        .current
        .map_or_else(|| ZERO_ID.to_owned(), |o| o.to_string());
    let mut caps = vec!["report-status".to_owned()];
    if sideband {
        caps.push("side-band-64k".into());
    }
    if adv.has("quiet") {
        caps.push("quiet".into());
    }
    if adv.capabilities.iter().any(|c| c.starts_with("agent=")) {
        caps.push(format!("agent={}", crate::io::http::USER_AGENT));
    }
    let line = format!("{old} {new} {refname}\0{}", caps.join(" "));
    let mut out = pkt(line.as_bytes());
    out.extend_from_slice(b"0000");
    out
}

/// `data` as one pkt-line.
pub(super) fn pkt(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:04x}", data.len() + 4).into_bytes();
    out.extend_from_slice(data);
    out
}

/// Why an answer could not be read.
#[derive(Debug)]
pub(super) enum Wire {
    /// The connection failed or ended early.
    Io(io::Error),
    /// The answer is not what git's protocol says.
    Malformed(String),
}

impl From<io::Error> for Wire {
    fn from(e: io::Error) -> Self {
        Wire::Io(e)
    }
}

/// Reads one pkt-line into `buf`: `Ok(true)` with its data (trailing LF kept), `Ok(false)`
/// for a flush-pkt. A length that is not 4 hex digits, is 1 to 3 (a v2 delimiter or
/// response-end, or nothing git writes) or above [`MAX_PKT_LEN`] is refused before
/// anything more is read; the answer ending within a pkt-line is an I/O error.
pub(super) fn read_pkt(r: &mut dyn Read, buf: &mut Vec<u8>) -> Result<bool, Wire> {
    let mut head = [0u8; 4];
    read_all(r, &mut head, "a pkt-line's length")?;
    let text = std::str::from_utf8(&head)
        .ok()
        .filter(|t| t.bytes().all(|b| b.is_ascii_hexdigit()));
    let Some(len) = text.and_then(|t| usize::from_str_radix(t, 16).ok()) else {
        return Err(Wire::Malformed(format!(
            "a pkt-line length of {} is not 4 hex digits",
            shown_bytes(&head)
        )));
    };
    match len {
        0 => Ok(false),
        1..=3 => Err(Wire::Malformed(format!(
            "a pkt-line length of {len} (a protocol v2 packet, or none at all) in a v0 answer"
        ))),
        _ if len > MAX_PKT_LEN => Err(Wire::Malformed(format!(
            "a pkt-line length of {len}, above the limit of {MAX_PKT_LEN}"
        ))),
        _ => {
            buf.clear();
            buf.resize(len - 4, 0);
            read_all(r, buf, "a pkt-line")?;
            Ok(true)
        }
    }
}

/// `read_exact`, an early end named as what was being read.
fn read_all(r: &mut dyn Read, buf: &mut [u8], what: &str) -> Result<(), Wire> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            Wire::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the answer ended in the middle of {what}"),
            ))
        } else {
            Wire::Io(e)
        }
    })
}

/// `bytes` as they may be shown in a message: at most 80, escaped.
pub(super) fn shown_bytes(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(80)];
    let mut s = format!("`{}`", cut.escape_ascii());
    if bytes.len() > cut.len() {
        s.push('…');
    }
    s
}

/// A pkt-line's data as text, without its trailing LF.
pub(super) fn line(data: &[u8]) -> &[u8] {
    data.strip_suffix(b"\n").unwrap_or(data)
}

/// Reads git-receive-pack's reference advertisement (after smart HTTP's service header, if
/// any) up to its final flush and picks out `refname` and the capabilities.
pub(super) fn read_advertisement(r: &mut dyn Read, refname: &str) -> Result<Advertisement, Wire> {
    let mut buf = Vec::new();
    let mut adv = Advertisement {
        current: None,
        capabilities: Vec::new(),
    };
    let mut first = true;
    while read_pkt(r, &mut buf)? {
        let mut data = line(&buf);
        if first && data == b"version 1" {
            continue;
        }
        if first {
            let Some(nul) = data.iter().position(|&b| b == 0) else {
                return Err(Wire::Malformed(format!(
                    "the first advertised reference {} has no capabilities",
                    shown_bytes(data)
                )));
            };
            let caps = std::str::from_utf8(&data[nul + 1..]).map_err(|_| {
                Wire::Malformed(format!("capabilities {} are not UTF-8", shown_bytes(data)))
            })?;
            adv.capabilities = caps.split_ascii_whitespace().map(str::to_owned).collect();
            data = &data[..nul];
            first = false;
        }
        let malformed = || {
            Wire::Malformed(format!(
                "an advertised reference {} is not `<id> <name>`",
                shown_bytes(data)
            ))
        };
        let (id, name) = data.split_at_checked(40).ok_or_else(malformed)?;
        let name = name.strip_prefix(b" ").ok_or_else(malformed)?;
        let id = std::str::from_utf8(id)
            .ok()
            .filter(|s| s.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|s| Oid::from_str(s).ok())
            .ok_or_else(malformed)?;
        if name == refname.as_bytes() {
            if id.is_zero() {
                return Err(malformed());
            }
            adv.current = Some(id);
        }
    }
    if first {
        return Err(Wire::Malformed(
            "the advertisement lists no reference and no capabilities".into(),
        ));
    }
    Ok(adv)
}

/// The answer to a push with side band: the report (band 1), or the fatal error (band 3);
/// with the remote's messages (band 2) either way.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Demuxed {
    Report { report: Vec<u8>, messages: String },
    Fatal { message: String, messages: String },
}

/// Splits a side-band answer (`gitprotocol-pack.txt`, "Packfile Data" for the bands) up to
/// its final flush.
pub(super) fn demultiplex(r: &mut dyn Read) -> Result<Demuxed, Wire> {
    let mut buf = Vec::new();
    let mut report = Vec::new();
    let mut messages = Vec::new();
    while read_pkt(r, &mut buf)? {
        let Some((&band, data)) = buf.split_first() else {
            return Err(Wire::Malformed("an empty side-band packet".into()));
        };
        match band {
            1 => {
                if report.len() + data.len() > MAX_REPORT {
                    return Err(Wire::Malformed(format!(
                        "a report longer than {MAX_REPORT} bytes"
                    )));
                }
                report.extend_from_slice(data);
            }
            2 => {
                let room = MAX_MESSAGES.saturating_sub(messages.len());
                messages.extend_from_slice(&data[..data.len().min(room)]);
            }
            3 => {
                return Ok(Demuxed::Fatal {
                    message: text(line(data)),
                    messages: text(&messages),
                });
            }
            other => {
                return Err(Wire::Malformed(format!(
                    "a side-band packet on band {other}"
                )));
            }
        }
    }
    Ok(Demuxed::Report {
        report,
        messages: text(&messages),
    })
}

/// The remote's bytes as one line of text: control characters and progress redraws
/// (`\r`) become spaces, runs of blanks one.
pub(super) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// `message`, followed by what the remote said (its hooks' output), if anything.
pub(super) fn with_messages(message: String, messages: &str) -> String {
    if messages.is_empty() {
        message
    } else {
        format!("{message} (the remote said: {messages})")
    }
}

/// What the report says of the push.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Report {
    Ok,
    /// `unpack <reason>`: the pack was refused whole.
    Unpack(String),
    /// `ng <ref> <reason>`.
    Ng(String),
}

/// Reads a report-status (`unpack …`, then one `ok`/`ng` line per command, then a flush)
/// and returns what it says of `refname`.
pub(super) fn read_report(r: &mut dyn Read, refname: &str) -> Result<Report, Wire> {
    let mut buf = Vec::new();
    if !read_pkt(r, &mut buf)? {
        return Err(Wire::Malformed("the report is empty".into()));
    }
    let unpack = match line(&buf).strip_prefix(b"unpack ") {
        Some(b"ok") => None,
        Some(reason) => Some(text(reason)),
        None => {
            return Err(Wire::Malformed(format!(
                "the report does not start with `unpack` (it starts with {})",
                shown_bytes(&buf)
            )));
        }
    };
    let mut status = None;
    while read_pkt(r, &mut buf)? {
        let data = line(&buf);
        let (name, result) = if let Some(name) = data.strip_prefix(b"ok ") {
            (name, Report::Ok)
        } else if let Some(rest) = data.strip_prefix(b"ng ") {
            let (name, reason) = match rest.iter().position(|&b| b == b' ') {
                Some(sp) => (&rest[..sp], text(&rest[sp + 1..])),
                None => (rest, String::new()),
            };
            (name, Report::Ng(reason))
        } else {
            return Err(Wire::Malformed(format!(
                "a report line {} is neither `ok <ref>` nor `ng <ref> <reason>`",
                shown_bytes(data)
            )));
        };
        if name == refname.as_bytes() {
            status = Some(result);
        }
    }
    if let Some(reason) = unpack {
        return Ok(Report::Unpack(reason));
    }
    status.ok_or_else(|| Wire::Malformed(format!("the report says nothing of {refname}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `data` as the pkt-lines of `lines` (None a flush).
    fn pkts(lines: &[Option<&[u8]>]) -> Vec<u8> {
        let mut out = Vec::new();
        for l in lines {
            match l {
                Some(d) => out.extend(pkt(d)),
                None => out.extend_from_slice(b"0000"),
            }
        }
        out
    }

    fn read_one(bytes: &[u8]) -> Result<Option<Vec<u8>>, Wire> {
        let mut buf = Vec::new();
        let mut r = bytes;
        Ok(read_pkt(&mut r, &mut buf)?.then_some(buf))
    }

    fn malformed(r: Result<impl std::fmt::Debug, Wire>) -> String {
        match r {
            Err(Wire::Malformed(m)) => m,
            other => panic!("expected a malformed answer, got {other:?}"),
        }
    }

    #[test]
    fn pkt_lines_are_read_with_every_length_checked() {
        assert_eq!(read_one(b"0009hello").unwrap().unwrap(), b"hello");
        assert_eq!(read_one(b"000AHELLO!").unwrap().unwrap(), b"HELLO!");
        assert_eq!(read_one(b"0004").unwrap().unwrap(), b"");
        assert_eq!(read_one(b"0000").unwrap(), None);
        assert!(malformed(read_one(b"00zzhello")).contains("`00zz` is not 4 hex digits"));
        assert!(malformed(read_one(b"-001")).contains("not 4 hex digits"));
        assert!(malformed(read_one(b"0001")).contains("length of 1"));
        assert!(malformed(read_one(b"0002")).contains("length of 2"));
        assert!(malformed(read_one(b"fff1xxxx")).contains("65521, above the limit of 65520"));
        assert!(malformed(read_one(b"ffff")).contains("above the limit"));
        // The largest pkt-line is read; the answer ending within one is an I/O failure.
        let mut max = b"fff0".to_vec();
        max.resize(65520, b'x');
        assert_eq!(read_one(&max).unwrap().unwrap().len(), 65516);
        for cut in [&b"00"[..], b"000ahel"] {
            match read_one(cut) {
                Err(Wire::Io(e)) => {
                    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
                    assert!(e.to_string().contains("ended in the middle"), "{e}");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";

    fn advertised(lines: &[&str]) -> Vec<u8> {
        let mut all: Vec<Option<&[u8]>> = lines.iter().map(|l| Some(l.as_bytes())).collect();
        all.push(None);
        pkts(&all)
    }

    #[test]
    fn the_advertisement_gives_the_branch_and_the_capabilities() {
        let caps = "report-status report-status-v2 delete-refs side-band-64k quiet atomic ofs-delta object-format=sha1 agent=git/2.47.3";
        let first = format!("{A} refs/heads/other\0{caps}\n");
        let second = format!("{B} refs/heads/main\n");
        let bytes = advertised(&[&first, &second, &format!("{A} .have\n")]);
        let adv = read_advertisement(&mut bytes.as_slice(), "refs/heads/main").unwrap();
        assert_eq!(adv.current, Some(Oid::from_str(B).unwrap()));
        assert!(adv.has("report-status") && adv.has("side-band-64k") && !adv.has("agent"));
        let adv = read_advertisement(&mut bytes.as_slice(), "refs/heads/absent").unwrap();
        assert_eq!(adv.current, None);

        // An empty repository: no reference, the capabilities on a placeholder.
        let empty = format!("{ZERO_ID} capabilities^{{}}\0report-status quiet\n");
        let bytes = advertised(&[&empty]);
        let adv = read_advertisement(&mut bytes.as_slice(), "refs/heads/main").unwrap();
        assert_eq!(adv.current, None);
        assert_eq!(adv.capabilities, ["report-status", "quiet"]);
    }

    #[test]
    fn a_malformed_advertisement_is_refused_precisely() {
        let ok = format!("{A} refs/heads/main\0report-status\n");
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                advertised(&[&format!("{A} refs/heads/main\n")]),
                "has no capabilities",
            ),
            (
                advertised(&[&format!("{}zz refs/heads/main\0report-status\n", &A[..38])]),
                "is not `<id> <name>`",
            ),
            (
                advertised(&[&format!("{A}refs/heads/main\0report-status\n")]),
                "is not `<id> <name>`",
            ),
            (
                advertised(&[&ok, "short\n"]),
                "`short` is not `<id> <name>`",
            ),
            (advertised(&[]), "lists no reference"),
        ];
        for (bytes, expected) in cases {
            let m = malformed(read_advertisement(&mut bytes.as_slice(), "refs/heads/main"));
            assert!(m.contains(expected), "{m}");
        }
    }

    #[test]
    fn the_command_asks_only_for_what_was_advertised() {
        let adv = Advertisement {
            current: None,
            capabilities: vec!["report-status".into(), "delete-refs".into()],
        };
        let new = Oid::from_str(B).unwrap();
        let expected = format!("0073{ZERO_ID} {B} refs/heads/main\0report-status0000");
        assert_eq!(
            String::from_utf8(command_pkts(&adv, "refs/heads/main", new, false)).unwrap(),
            expected
        );
        let adv = Advertisement {
            current: Some(Oid::from_str(A).unwrap()),
            capabilities: vec![
                "report-status".into(),
                "side-band-64k".into(),
                "quiet".into(),
                "agent=git/2".into(),
            ],
        };
        let line = String::from_utf8(command_pkts(&adv, "refs/heads/main", new, true)).unwrap();
        assert!(
            line.ends_with(&format!(
                "{A} {B} refs/heads/main\0report-status side-band-64k quiet agent={}0000",
                crate::io::http::USER_AGENT
            )),
            "{line:?}"
        );
        assert_eq!(
            usize::from_str_radix(&line[..4], 16).unwrap(),
            line.len() - 4
        );
    }

    fn band(n: u8, data: &[u8]) -> Vec<u8> {
        let mut d = vec![n];
        d.extend_from_slice(data);
        pkt(&d)
    }

    #[test]
    fn the_side_band_is_split_into_report_messages_and_errors() {
        let report = pkts(&[Some(b"unpack ok\n"), Some(b"ok refs/heads/main\n"), None]);
        let mut answer = band(2, b"remote: checking\r");
        answer.extend(band(1, b"")); // a keepalive
        answer.extend(band(1, &report[..7]));
        answer.extend(band(2, b"\x1b[1mdone\x1b[m\n"));
        answer.extend(band(1, &report[7..]));
        answer.extend_from_slice(b"0000");
        let Demuxed::Report {
            report: got,
            messages,
        } = demultiplex(&mut answer.as_slice()).unwrap()
        else {
            panic!()
        };
        assert_eq!(got, report);
        assert_eq!(messages, "remote: checking [1mdone [m");
        assert_eq!(
            read_report(&mut got.as_slice(), "refs/heads/main").unwrap(),
            Report::Ok
        );

        let mut answer = band(2, b"hook says no\n");
        answer.extend(band(3, b"fatal: the disk is full\n"));
        assert_eq!(
            demultiplex(&mut answer.as_slice()).unwrap(),
            Demuxed::Fatal {
                message: "fatal: the disk is full".into(),
                messages: "hook says no".into()
            }
        );
        let m = malformed(demultiplex(&mut band(5, b"x").as_slice()));
        assert!(m.contains("band 5"), "{m}");
        let m = malformed(demultiplex(&mut pkt(b"").as_slice()));
        assert!(m.contains("empty side-band packet"), "{m}");
    }

    #[test]
    fn the_report_names_the_outcome_of_the_branch() {
        let read =
            |lines: &[Option<&[u8]>]| read_report(&mut pkts(lines).as_slice(), "refs/heads/main");
        assert_eq!(
            read(&[
                Some(b"unpack ok\n"),
                Some(b"ok refs/heads/other\n"),
                Some(b"ok refs/heads/main\n"),
                None
            ])
            .unwrap(),
            Report::Ok
        );
        assert_eq!(
            read(&[
                Some(b"unpack ok\n"),
                Some(b"ng refs/heads/main pre-receive hook declined\n"),
                None
            ])
            .unwrap(),
            Report::Ng("pre-receive hook declined".into())
        );
        assert_eq!(
            read(&[
                Some(b"unpack index-pack abnormal exit\n"),
                Some(b"ng refs/heads/main unpacker error\n"),
                None
            ])
            .unwrap(),
            Report::Unpack("index-pack abnormal exit".into())
        );
        let m = malformed(read(&[
            Some(b"unpack ok\n"),
            Some(b"ok refs/heads/other\n"),
            None,
        ]));
        assert!(m.contains("says nothing of refs/heads/main"), "{m}");
        let m = malformed(read(&[
            Some(b"unpack ok\n"),
            Some(b"maybe refs/heads/main\n"),
            None,
        ]));
        assert!(m.contains("`maybe refs/heads/main` is neither"), "{m}");
        let m = malformed(read(&[Some(b"ok refs/heads/main\n"), None]));
        assert!(m.contains("does not start with `unpack`"), "{m}");
        assert!(malformed(read(&[None])).contains("the report is empty"));
        assert!(matches!(read(&[Some(b"unpack ok\n")]), Err(Wire::Io(_))));
    }
}
