//! Syslog, RFC 5424, with the rendered message (the JSON alert) as MSG:
//! to `/dev/log` (a Unix datagram socket), UDP (one datagram each) or TCP
//! with octet-counting framing (RFC 6587 3.4.1: `LEN SP MSG`), which, unlike
//! newline framing, survives any byte in MSG.
//!
//! `<PRI>1 TIMESTAMP HOSTNAME sigexec PROCID MSGID - MSG`: PRI from the
//! configured facility and the rule level (critical -> crit, high -> err,
//! medium -> warning, low -> notice, else info); MSGID is the message kind
//! (`alert`, `event`, `loss`, `rate_limit`); no structured data. MSG carries
//! no BOM: the RFC's MSG-ANY form, since JSON consumers would choke on one.

use std::{
    io::{self, Write as _},
    net::{TcpStream, UdpSocket},
    os::unix::net::UnixDatagram,
    time::Duration,
};

use super::{Message, Output, SinkConfig, Transport};

pub const DEV_LOG: &str = "/dev/log";

/// Facility names, in code order (RFC 5424 table 1), `local0`..`local7`
/// after.
pub const FACILITIES: &[&str] = &[
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
];

/// The facility code of `name`.
pub fn facility(name: &str) -> Option<u8> {
    let i = FACILITIES.iter().position(|f| *f == name)?;
    let code = if i >= 12 { 16 + (i - 12) } else { i };
    u8::try_from(code).ok()
}

/// Syslog severity for a Sigma level and message kind.
pub fn severity(kind: &str, level: Option<&str>) -> u8 {
    match (kind, level) {
        (_, Some("critical")) => 2,
        (_, Some("high")) => 3,
        (_, Some("medium")) | ("loss", _) => 4,
        (_, Some("low")) => 5,
        _ => 6,
    }
}

/// One RFC 5424 message (no framing).
pub fn format(facility: u8, hostname: &str, pid: u32, msg: &Message, text: &str) -> String {
    let pri = u32::from(facility) * 8 + u32::from(severity(msg.kind(), msg.level()));
    let now = time::OffsetDateTime::now_utc();
    // TIME-SECFRAC allows at most 6 digits.
    let ts = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.microsecond()
    );
    format!(
        "<{pri}>1 {ts} {} sigexec {pid} {} - {text}",
        header_field(hostname, 255),
        header_field(msg.kind(), 32)
    )
}

/// A header field: printable US-ASCII without spaces, at most `max`
/// characters, `-` when empty.
fn header_field(s: &str, max: usize) -> String {
    let f: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if f.is_empty() { "-".into() } else { f }
}

enum Conn {
    Unix(UnixDatagram),
    Udp(UdpSocket),
    Tcp(TcpStream),
}

pub struct Syslog {
    transport: Transport,
    address: String,
    facility: u8,
    hostname: String,
    pid: u32,
    conn: Option<Conn>,
}

/// The largest UDP payload over IPv4; also used for `/dev/log`.
pub const MAX_DATAGRAM: usize = 65_507;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A collector that stops reading must not hold the sink thread forever.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

impl Syslog {
    /// Does not connect: a collector that is down at start must not stop
    /// the daemon; the first write connects.
    pub fn new(c: &SinkConfig) -> io::Result<Syslog> {
        let facility = facility(&c.facility)
            .ok_or_else(|| io::Error::other(format!("unknown facility '{}'", c.facility)))?;
        Ok(Syslog {
            transport: c.transport,
            address: c.address.clone().unwrap_or_else(|| DEV_LOG.into()),
            facility,
            hostname: crate::process::Enricher::new().hostname.to_string(),
            pid: std::process::id(),
            conn: None,
        })
    }

    fn connect(&self) -> io::Result<Conn> {
        use std::net::ToSocketAddrs as _;
        Ok(match self.transport {
            Transport::Unix => {
                let s = UnixDatagram::unbound()?;
                s.connect(&self.address)?;
                Conn::Unix(s)
            }
            Transport::Udp => {
                let addr = self
                    .address
                    .to_socket_addrs()?
                    .next()
                    .ok_or_else(|| io::Error::other("address resolves to nothing"))?;
                let bind = if addr.is_ipv4() {
                    "0.0.0.0:0"
                } else {
                    "[::]:0"
                };
                let s = UdpSocket::bind(bind)?;
                s.connect(addr)?;
                Conn::Udp(s)
            }
            Transport::Tcp => {
                let addr = self
                    .address
                    .to_socket_addrs()?
                    .next()
                    .ok_or_else(|| io::Error::other("address resolves to nothing"))?;
                let s = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
                s.set_write_timeout(Some(WRITE_TIMEOUT))?;
                s.set_nodelay(true)?;
                Conn::Tcp(s)
            }
        })
    }
}

impl Output for Syslog {
    fn write(&mut self, text: &str, msg: &Message) -> io::Result<()> {
        let line = format(self.facility, &self.hostname, self.pid, msg, text);
        if self.transport != Transport::Tcp && line.len() > MAX_DATAGRAM {
            // One oversized message (a huge argv) is not a failing sink.
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "message of {} bytes exceeds the {MAX_DATAGRAM}-byte datagram limit \
                     (transport: tcp has none)",
                    line.len()
                ),
            ));
        }
        if self.conn.is_none() {
            self.conn = Some(self.connect()?);
        }
        let result = match self.conn.as_mut() {
            Some(Conn::Unix(s)) => s.send(line.as_bytes()).map(drop),
            Some(Conn::Udp(s)) => s.send(line.as_bytes()).map(drop),
            Some(Conn::Tcp(s)) => {
                let framed = format!("{} {line}", line.len());
                s.write_all(framed.as_bytes())
            }
            None => Ok(()),
        };
        if result.is_err() {
            // Reconnect on the next write.
            self.conn = None;
        }
        result
    }

    fn reopen(&mut self) -> io::Result<()> {
        self.conn = None;
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        if let Some(Conn::Tcp(s)) = &mut self.conn {
            s.flush()?;
            s.shutdown(std::net::Shutdown::Write)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::Body;

    #[test]
    fn oversized_datagram_is_refused_without_touching_the_connection() {
        let receiver = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let mut sink = Syslog::new(&SinkConfig {
            kind: crate::sinks::SinkKind::Syslog,
            transport: Transport::Udp,
            address: Some(receiver.local_addr().expect("addr").to_string()),
            ..SinkConfig::default()
        })
        .expect("sink");
        let msg = Message::new(Body::Record(serde_json::json!({"kind": "event"})));
        let err = sink
            .write(&"x".repeat(MAX_DATAGRAM), &msg)
            .expect_err("too big");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        sink.write("{}", &msg)
            .expect("a normal message still goes out");
        let mut buf = [0u8; 1024];
        let n = receiver.recv(&mut buf).expect("recv");
        assert!(String::from_utf8_lossy(&buf[..n]).ends_with(" event - {}"));
    }

    #[test]
    fn facility_codes_follow_rfc5424() {
        assert_eq!(facility("kern"), Some(0));
        assert_eq!(facility("auth"), Some(4));
        assert_eq!(facility("authpriv"), Some(10));
        assert_eq!(facility("local0"), Some(16));
        assert_eq!(facility("local7"), Some(23));
        assert_eq!(facility("security"), None);
    }

    #[test]
    fn header_has_the_rfc5424_shape() {
        let msg = Message::new(Body::Record(serde_json::json!({"kind": "loss", "lost": 3})));
        let line = format(4, "host one", 42, &msg, msg.json());
        // auth (4) * 8 + warning (4)
        let re = regex::Regex::new(
            r#"^<36>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z hostone sigexec 42 loss - \{"kind":"loss","lost":3\}$"#,
        )
        .expect("regex");
        assert!(re.is_match(&line), "{line}");
    }
}
