//! The access log's lines and writer, against the strict parser the integration
//! tests use.

use super::*;
use std::sync::{Condvar, Mutex};

const ELB: &str = "app/demo/tether";

/// 2018-07-02T22:23:00.186641Z plus `micros`.
fn at(micros: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_530_570_180) + Duration::from_micros(186_641 + micros)
}

/// An HTTPS request forwarded by rule 1 to a target that answered 200.
fn https_forward() -> Entry {
    Entry {
        kind: Kind::Https,
        time: at(0),
        client: Some("192.168.131.39:2817".parse().unwrap()),
        target: Some("10.0.0.1:80".parse().unwrap()),
        request_processing: Some(Duration::from_micros(86_400)),
        target_processing: Some(Duration::from_micros(48_000)),
        response_processing: Some(Duration::from_micros(37_499)),
        elb_status: Some(200),
        target_status: Some(200),
        received_bytes: 0,
        sent_bytes: 57,
        request: Some("GET https://www.example.com:443/ HTTP/1.1".into()),
        user_agent: Some("curl/7.46.0".into()),
        tls: Some(TlsSession {
            version: "TLSv1.2",
            cipher_suite: "ECDHE-RSA-AES128-GCM-SHA256",
        }),
        target_group: Some("web".into()),
        trace_id: Some("Root=1-58337281-1d84f3d73c47ec4e58577259".into()),
        domain_name: Some("www.example.com".into()),
        chosen_cert: Some("/etc/tether/site.pem".into()),
        matched_rule_priority: Some(1),
        request_creation_time: at(0) - Duration::from_micros(11_822_641),
        actions_executed: Some(ActionKind::Forward),
        redirect_url: None,
        error_reason: None,
        targets: vec!["10.0.0.1:80".parse().unwrap()],
        target_statuses: vec![Some(200)],
        classification: None,
        classification_reason: None,
        transformed_host: None,
        transformed_uri: None,
    }
}

fn line(e: &Entry) -> String {
    let mut out = Vec::new();
    e.write_line(ELB, &mut out);
    let line = String::from_utf8(out).unwrap();
    if let Err(why) = alb_log::parse(&line) {
        panic!("the strict parser refuses {line:?}: {why}");
    }
    line
}

#[test]
fn an_https_forward_is_written_field_by_field_as_alb_writes_it() {
    let want = [
        "https",
        "2018-07-02T22:23:00.186641Z",
        "app/demo/tether",
        "192.168.131.39:2817",
        "10.0.0.1:80",
        "0.086",
        "0.048",
        "0.037",
        "200",
        "200",
        "0",
        "57",
        "\"GET https://www.example.com:443/ HTTP/1.1\"",
        "\"curl/7.46.0\"",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "TLSv1.2",
        "arn:tether:elasticloadbalancing:::targetgroup/web",
        "\"Root=1-58337281-1d84f3d73c47ec4e58577259\"",
        "\"www.example.com\"",
        "\"/etc/tether/site.pem\"",
        "1",
        "2018-07-02T22:22:48.364000Z",
        "\"forward\"",
        "\"-\"",
        "\"-\"",
        "\"10.0.0.1:80\"",
        "\"200\"",
        "\"-\"",
        "\"-\"",
        "-",
        "\"-\"",
        "\"-\"",
        "\"-\"",
    ]
    .join(" ")
        + "\n";
    assert_eq!(line(&https_forward()), want);
}

#[test]
fn a_fixed_response_has_no_target_and_minus_one_times() {
    let e = Entry {
        kind: Kind::Http,
        target: None,
        request_processing: None,
        target_processing: None,
        response_processing: None,
        elb_status: Some(503),
        target_status: None,
        tls: None,
        target_group: None,
        trace_id: None,
        domain_name: None,
        chosen_cert: None,
        matched_rule_priority: Some(20),
        actions_executed: Some(ActionKind::FixedResponse),
        targets: Vec::new(),
        target_statuses: Vec::new(),
        request: Some("GET http://www.example.com:80/maint HTTP/1.1".into()),
        ..https_forward()
    };
    let l = line(&e);
    assert!(
        l.starts_with("http 2018-07-02T22:23:00.186641Z app/demo/tether 192.168.131.39:2817 - -1 -1 -1 503 - 0 57 "),
        "{l}"
    );
    assert!(
        l.ends_with(" - - - \"-\" \"-\" \"-\" 20 2018-07-02T22:22:48.364000Z \"fixed-response\" \"-\" \"-\" \"-\" \"-\" \"-\" \"-\" - \"-\" \"-\" \"-\"\n"),
        "{l}"
    );
    let p = alb_log::parse(&l).unwrap();
    assert_eq!(p.target, None);
    assert_eq!(p.request_processing_time, None);
    assert_eq!(p.actions_executed, ["fixed-response"]);
}

#[test]
fn a_request_that_could_not_be_parsed_is_written_as_alb_writes_it() {
    let e = Entry {
        request: None,
        user_agent: None,
        matched_rule_priority: None,
        actions_executed: None,
        target: None,
        targets: Vec::new(),
        target_statuses: Vec::new(),
        target_status: None,
        target_group: None,
        elb_status: Some(400),
        request_processing: None,
        target_processing: None,
        response_processing: None,
        ..https_forward()
    };
    let l = line(&e);
    assert!(l.contains(" 400 - 0 57 \"- - - \" \"-\" "), "{l}");
    assert!(l.contains(" - 2018-07-02T22:22:48.364000Z \"-\" "), "{l}");
}

#[test]
fn quotes_and_control_bytes_are_escaped_so_the_line_still_splits() {
    let e = Entry {
        user_agent: Some("Mozilla \"quoted\" \\ tab\there\r\n".into()),
        trace_id: Some(String::new().into()),
        ..https_forward()
    };
    let l = line(&e);
    assert!(
        l.contains(r#" "Mozilla \"quoted\" \\ tab\x09here\x0d\x0a" "#),
        "{l}"
    );
    assert_eq!(l.matches('\n').count(), 1);
    let p = alb_log::parse(&l).unwrap();
    assert_eq!(
        p.user_agent.as_deref(),
        Some("Mozilla \"quoted\" \\ tab\there\r\n")
    );
    // An empty value is written as a missing one.
    assert_eq!(p.trace_id, None);
    // An unquoted field cannot hold a space.
    let mut out = Vec::new();
    https_forward().write_line("app/my lb/tether", &mut out);
    let l = String::from_utf8(out).unwrap();
    assert!(l.contains(r" app/my\x20lb/tether "), "{l}");
    assert_eq!(alb_log::parse(&l).unwrap().elb, "app/my lb/tether");
}

#[test]
fn a_long_user_agent_is_cut_at_8_kb() {
    let e = Entry {
        user_agent: Some("é".repeat(5000).into()),
        ..https_forward()
    };
    let ua = alb_log::parse(&line(&e)).unwrap().user_agent.unwrap();
    assert_eq!(ua, "é".repeat(4096));
}

#[test]
fn retries_transforms_and_classifications_fill_their_fields() {
    let e = Entry {
        targets: vec!["10.0.0.1:80".parse().unwrap(), "[::1]:81".parse().unwrap()],
        target_statuses: vec![None, Some(200)],
        target: Some("[::1]:81".parse().unwrap()),
        transformed_host: Some("m.example.com".into()),
        transformed_uri: Some("/v2/items?id=1".into()),
        classification: Some("Acceptable"),
        classification_reason: Some("GetHeadZeroContentLength"),
        kind: Kind::H2,
        request: Some("GET https://www.example.com:443/items?id=1 HTTP/2.0".into()),
        ..https_forward()
    };
    let l = line(&e);
    assert!(
        l.ends_with(" \"10.0.0.1:80 [::1]:81\" \"- 200\" \"Acceptable\" \"GetHeadZeroContentLength\" - \"m.example.com\" \"/v2/items?id=1\" \"TransformSuccess\"\n"),
        "{l}"
    );
    let p = alb_log::parse(&l).unwrap();
    assert_eq!(p.target_status_code_list, [None, Some(200)]);
    assert_eq!(p.request.unwrap().path, "/items?id=1");
}

#[test]
fn times_are_utc_with_microseconds_across_dates() {
    for (secs, want) in [
        (0, "1970-01-01T00:00:00.000000Z"),
        (951_868_799, "2000-02-29T23:59:59.000000Z"),
        (1_735_646_400, "2024-12-31T12:00:00.000000Z"),
    ] {
        let mut out = Vec::new();
        timestamp(&mut out, UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(String::from_utf8(out).unwrap(), want);
    }
}

// === The writer ===

/// An output whose first write blocks until released: a stuck disk or a pipe
/// nobody reads.
#[derive(Clone, Default)]
struct Stuck {
    state: Arc<(Mutex<StuckState>, Condvar)>,
    written: Arc<Mutex<Vec<u8>>>,
}

#[derive(Default)]
struct StuckState {
    entered: bool,
    released: bool,
}

impl Write for Stuck {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (lock, cond) = &*self.state;
        let mut s = lock.lock().unwrap();
        s.entered = true;
        cond.notify_all();
        while !s.released {
            s = cond.wait(s).unwrap();
        }
        self.written.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Stuck {
    fn wait_entered(&self) {
        let (lock, cond) = &*self.state;
        let mut s = lock.lock().unwrap();
        while !s.entered {
            s = cond.wait(s).unwrap();
        }
    }

    fn release(&self) {
        let (lock, cond) = &*self.state;
        lock.lock().unwrap().released = true;
        cond.notify_all();
    }
}

fn log_to(out: impl Write + Send + 'static, capacity: usize) -> AccessLog {
    AccessLog::spawn(
        Box::new(out),
        None,
        ELB.to_string(),
        Arc::default(),
        capacity,
    )
    .unwrap()
}

#[test]
fn a_full_queue_drops_and_counts_without_blocking() {
    const CAPACITY: usize = 100;
    let out = Stuck::default();
    let log = log_to(out.clone(), CAPACITY);
    // The writer takes the first entry and blocks writing it.
    log.push(https_forward());
    out.wait_entered();
    let extra = 2_000;
    let started = Instant::now();
    for _ in 0..CAPACITY + extra {
        log.push(https_forward());
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "push blocked: {:?}",
        started.elapsed()
    );
    assert_eq!(log.dropped(), extra as u64);
    assert!(!log.flush(Duration::from_millis(50)), "a stuck output");
    out.release();
    assert!(log.flush(Duration::from_secs(10)));
    assert_eq!(log.written(), 1 + CAPACITY as u64);
    assert_eq!(log.dropped(), extra as u64);
    let written = out.written.lock().unwrap();
    let text = std::str::from_utf8(&written).unwrap();
    assert_eq!(text.lines().count(), 1 + CAPACITY);
    assert!(text.lines().all(|l| alb_log::parse(l).is_ok()));
}

#[test]
fn lines_appear_without_a_flush_once_the_queue_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let log = AccessLog::start(LogTarget::File(path.clone()), "demo").unwrap();
    log.push(https_forward());
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&path)
        .unwrap_or_default()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "no line written");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        line(&https_forward())
    );
}

#[test]
fn a_stopped_log_writes_what_was_queued_and_drops_the_rest() {
    let written = Stuck::default();
    written.release();
    let log = log_to(written.clone(), 10);
    log.push(https_forward());
    assert!(log.stop(Duration::from_secs(10)));
    log.push(https_forward());
    assert_eq!((log.written(), log.dropped()), (1, 1));
    assert_eq!(
        written.written.lock().unwrap().len(),
        line(&https_forward()).len()
    );
}

#[test]
fn sigusr1_reopens_the_file_at_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let rotated = dir.path().join("access.log.1");
    let log = AccessLog::start(LogTarget::File(path.clone()), "demo").unwrap();
    log.push(https_forward());
    assert!(log.flush(Duration::from_secs(10)));
    // logrotate moves the file away, then signals.
    std::fs::rename(&path, &rotated).unwrap();
    signal_hook::low_level::raise(signal_hook::consts::SIGUSR1).unwrap();
    let second = Entry {
        sent_bytes: 99,
        ..https_forward()
    };
    log.push(second.clone());
    assert!(log.flush(Duration::from_secs(10)));
    assert_eq!(
        std::fs::read_to_string(&rotated).unwrap(),
        line(&https_forward())
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), line(&second));
    assert_eq!((log.written(), log.dropped()), (2, 0));
}
