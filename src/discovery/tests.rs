//! The poll loop against an in-memory source, on paused tokio time: it publishes
//! changes once, keeps the last good targets through failures, backs off within its
//! bounds, and polls at the interval again once the source is back.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use tokio::time::Instant;

use super::*;

/// Answers from a script, recording when each poll happened.
struct Scripted {
    answers: VecDeque<Result<Vec<Discovered>, DiscoveryError>>,
    polls: Arc<Mutex<Vec<Instant>>>,
}

#[async_trait]
impl Source for Scripted {
    async fn poll(&mut self) -> Result<Vec<Discovered>, DiscoveryError> {
        self.polls.lock().push(Instant::now());
        // After the script, the source stays down.
        self.answers.pop_front().unwrap_or_else(|| Err(down()))
    }
}

fn target(port: u16) -> Discovered {
    Discovered {
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        task_arn: Some(format!("task-{port}")),
        draining: false,
    }
}

fn down() -> DiscoveryError {
    DiscoveryError::Call {
        call: "ListTasks",
        message: "ThrottlingException".into(),
    }
}

struct Run {
    polls: Arc<Mutex<Vec<Instant>>>,
    status: DiscoveryStatus,
    discovered: DiscoveredTargets,
    rebuilds: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

const INTERVAL: Duration = Duration::from_secs(10);

fn start(answers: Vec<Result<Vec<Discovered>, DiscoveryError>>) -> Run {
    let polls = Arc::new(Mutex::new(Vec::new()));
    let discovered: DiscoveredTargets = Arc::default();
    let rebuilds = Arc::new(AtomicUsize::new(0));
    let counter = rebuilds.clone();
    let source = Box::new(Scripted {
        answers: answers.into(),
        polls: polls.clone(),
    });
    let status = DiscoveryStatus::default();
    let task = tokio::spawn(follow(
        "g".into(),
        source,
        INTERVAL,
        discovered.clone(),
        Arc::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        }),
        status.clone(),
    ));
    Run {
        polls,
        status,
        discovered,
        rebuilds,
        task,
    }
}

impl Run {
    fn targets(&self) -> Option<Vec<Discovered>> {
        self.discovered.load().get("g").cloned()
    }

    /// The gaps between consecutive polls.
    fn gaps(&self) -> Vec<Duration> {
        let polls = self.polls.lock();
        polls.windows(2).map(|w| w[1] - w[0]).collect()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(start_paused = true)]
async fn it_should_publish_a_change_once_and_keep_the_last_good_targets_while_polls_fail() {
    let a = vec![target(1), target(2)];
    let run = start(vec![Ok(a.clone()), Ok(a.clone()), Err(down()), Err(down())]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(run.targets(), Some(a.clone()));
    assert_eq!(run.rebuilds.load(Ordering::SeqCst), 1);
    // The same answer again, then two failures: nothing republished, nothing lost.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(
        run.polls.lock().len() >= 4,
        "{} polls",
        run.polls.lock().len()
    );
    assert_eq!(run.targets(), Some(a));
    assert_eq!(run.rebuilds.load(Ordering::SeqCst), 1);
    // The status page sees the outage: since when, and why.
    let (group, s) = run.status.snapshot().remove(0);
    assert_eq!(group, "g");
    assert!(
        s.failing_since.is_some() && s.last_success.is_some(),
        "{s:?}"
    );
    assert!(s.failing_since >= s.last_success, "{s:?}");
    assert_eq!(
        s.last_error.as_deref(),
        Some("ListTasks: ThrottlingException")
    );
    assert!(s.failures >= 2, "{s:?}");
}

#[tokio::test(start_paused = true)]
async fn it_should_back_off_within_its_bounds_and_return_to_the_interval_when_the_source_is_back() {
    let b = vec![target(3)];
    let mut script = vec![Ok(vec![target(1)])];
    script.extend((0..6).map(|_| Err(down())));
    script.push(Ok(b.clone()));
    script.push(Ok(b.clone()));
    let run = start(script);
    tokio::time::sleep(Duration::from_secs(3600)).await;
    let gaps = run.gaps();
    assert!(gaps.len() >= 9, "{gaps:?}");
    // After the first good poll: the interval. After the k-th failure in a row: the
    // back-off for k failures, jittered to between half of it and all of it.
    assert_eq!(gaps[0], INTERVAL);
    for (k, gap) in gaps[1..7].iter().enumerate() {
        let full = backoff(INTERVAL, k as u32 + 1);
        assert!(
            *gap >= full / 2 && *gap <= full,
            "gap after failure {}: {gap:?}, expected {:?}..={full:?}",
            k + 1,
            full / 2
        );
    }
    // Back to the interval once a poll succeeds, with the new targets published.
    assert_eq!(gaps[7], INTERVAL);
    assert_eq!(run.targets(), Some(b));
    assert_eq!(run.rebuilds.load(Ordering::SeqCst), 2);
}

#[test]
fn the_backoff_doubles_up_to_eight_intervals_and_never_past_two_minutes() {
    let s = Duration::from_secs;
    assert_eq!(backoff(s(10), 0), s(10));
    assert_eq!(backoff(s(10), 1), s(20));
    assert_eq!(backoff(s(10), 2), s(40));
    assert_eq!(backoff(s(10), 3), s(80));
    assert_eq!(backoff(s(10), 30), s(80));
    assert_eq!(backoff(s(5), 3), s(40));
    assert_eq!(backoff(s(60), 3), s(120));
    assert_eq!(backoff(s(1), 9), s(8));
}

/// ECS and a file side by side, each group through its own `follow` as
/// [`DiscoveryService`] runs them: ECS is played by a scripted source (the real one
/// needs an endpoint: tests/ecs.rs has both against a fake one), the file is real and
/// opened from its spec.
#[tokio::test(start_paused = true)]
async fn it_should_follow_an_ecs_group_and_a_file_group_through_the_same_loop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("targets.json");
    std::fs::write(&path, r#"["127.0.0.1:2", "127.0.0.1:1"]"#).unwrap();
    let discovered: DiscoveredTargets = Arc::default();
    let status = DiscoveryStatus::default();
    let rebuilds = Arc::new(AtomicUsize::new(0));
    let counter = rebuilds.clone();
    let rebuild: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let mut ecs_answers = vec![Ok(vec![target(7)])];
    ecs_answers.extend((0..10).map(|_| Ok(vec![target(7), target(8)])));
    let ecs = Box::new(Scripted {
        answers: ecs_answers.into(),
        polls: Arc::default(),
    });
    let file = DiscoverySpec::File(FileDiscovery {
        path: path.clone(),
        interval: INTERVAL,
    })
    .open()
    .await;
    let tasks = [
        tokio::spawn(follow(
            "ecs".into(),
            ecs,
            INTERVAL,
            discovered.clone(),
            rebuild.clone(),
            status.clone(),
        )),
        tokio::spawn(follow(
            "file".into(),
            file,
            INTERVAL,
            discovered.clone(),
            rebuild,
            status.clone(),
        )),
    ];
    let group = |name: &str| -> Vec<(u16, bool)> {
        discovered.load()[name]
            .iter()
            .map(|t| (t.addr.port(), t.draining))
            .collect()
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(group("ecs"), [(7, false)]);
    assert_eq!(group("file"), [(1, false), (2, false)]);
    assert_eq!(rebuilds.load(Ordering::SeqCst), 2);

    // Both change: ECS scales out; the file drops 2, marks 1 draining, adds 3.
    let tmp = dir.path().join("targets.json.tmp");
    std::fs::write(
        &tmp,
        r#"[{ "address": "127.0.0.1:1", "draining": true }, "127.0.0.1:3"]"#,
    )
    .unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    tokio::time::sleep(INTERVAL).await;
    assert_eq!(group("ecs"), [(7, false), (8, false)]);
    assert_eq!(group("file"), [(1, true), (3, false)]);
    assert_eq!(rebuilds.load(Ordering::SeqCst), 4);

    // A bad file: its group keeps its targets and shows the error; ECS goes on.
    std::fs::write(&path, "[\n  \"127.0.0.1:3\",\n  \"garbage\"\n]").unwrap();
    tokio::time::sleep(INTERVAL).await;
    assert_eq!(group("file"), [(1, true), (3, false)]);
    assert_eq!(rebuilds.load(Ordering::SeqCst), 4);
    let all = status.snapshot();
    let (_, ecs) = all.iter().find(|(g, _)| g == "ecs").unwrap();
    let (_, file) = all.iter().find(|(g, _)| g == "file").unwrap();
    assert_eq!((ecs.failures, ecs.targets), (0, 2), "{ecs:?}");
    assert!(file.failing_since.is_some(), "{file:?}");
    let error = file.last_error.as_deref().unwrap_or_default();
    assert!(
        error.starts_with(&format!("{}:3:", path.display()))
            && error.contains("invalid target \"garbage\""),
        "{error}"
    );
    for t in tasks {
        t.abort();
    }
}
