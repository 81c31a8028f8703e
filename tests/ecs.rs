//! ECS discovery end to end: a fake ECS + EC2 endpoint served in-process on
//! 127.0.0.1 (ECS JSON selected by `X-Amz-Target`, EC2 form-encoded with XML
//! answers), reached by the real aws-sdk-ecs/aws-sdk-ec2 clients inside tether via
//! `endpoint_url`. Task addresses point at real backends on 127.0.0.x, so requests
//! really flow. The SDK gets static dummy credentials and
//! `AWS_EC2_METADATA_DISABLED=true`: nothing leaves loopback.

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

#[derive(Clone)]
struct FakeTask {
    arn: String,
    service: String,
    last: &'static str,
    desired: &'static str,
    /// awsvpc: the ENI address.
    eni: Option<String>,
    /// bridge: container instance and (container port, host port).
    instance: Option<String>,
    bindings: Vec<(u16, u16)>,
}

#[derive(Default)]
struct FakeState {
    tasks: Vec<FakeTask>,
    /// container instance ARN → (EC2 instance id, private IP)
    instances: HashMap<String, (String, String)>,
    /// Answer every ECS call with this error (ThrottlingException on 400, or 5xx).
    failing: Option<u16>,
    /// The endpoint is down: connections are closed unanswered.
    down: bool,
    /// service name → (target group ARN, container name, container port)
    services: HashMap<String, (String, String, u16)>,
    calls: HashMap<String, usize>,
    largest_describe: usize,
    /// Every call failed on purpose: how (`"400"`, `"503"`, `"down"`) and the SDK's
    /// `amz-sdk-invocation-id` (one per call, the same on each of its attempts).
    failed: Vec<(String, String)>,
}

/// The `amz-sdk-invocation-id` of a request.
fn invocation_id(headers: &http::HeaderMap) -> String {
    headers
        .get("amz-sdk-invocation-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none")
        .to_string()
}

type Fake = Arc<Mutex<FakeState>>;

fn task_json(t: &FakeTask) -> Value {
    let mut container = json!({ "name": "app" });
    let mut task = json!({
        "taskArn": t.arn,
        "group": format!("service:{}", t.service),
        "lastStatus": t.last,
        "desiredStatus": t.desired,
    });
    if let Some(ip) = &t.eni {
        task["attachments"] = json!([{ "type": "ElasticNetworkInterface", "details": [
            { "name": "subnetId", "value": "subnet-1" },
            { "name": "privateIPv4Address", "value": ip }
        ]}]);
    }
    if let Some(ci) = &t.instance {
        task["containerInstanceArn"] = json!(ci);
        container["networkBindings"] = json!(t
            .bindings
            .iter()
            .map(|(c, h)| json!({ "containerPort": c, "hostPort": h, "protocol": "tcp" }))
            .collect::<Vec<_>>());
    }
    task["containers"] = json!([container]);
    task
}

/// The strings of a JSON array (empty when it is not one).
fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

async fn fake_handle(
    req: Request<Incoming>,
    fake: Fake,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(|t| t.rsplit('.').next().unwrap_or("").to_string());
    let invocation = invocation_id(req.headers());
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut st = fake.lock().unwrap();
    let Some(op) = target else {
        // EC2 (query protocol): DescribeInstances with InstanceId.N.
        *st.calls.entry("DescribeInstances".into()).or_default() += 1;
        let form = String::from_utf8_lossy(&body).to_string();
        let ids: Vec<String> = form
            .split('&')
            .filter(|kv| kv.starts_with("InstanceId."))
            .filter_map(|kv| kv.split_once('=').map(|(_, v)| v.to_string()))
            .collect();
        let items: String = st
            .instances
            .values()
            .filter(|(id, _)| ids.contains(id))
            .map(|(id, ip)| format!("<item><instanceId>{id}</instanceId><privateIpAddress>{ip}</privateIpAddress></item>"))
            .collect();
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><DescribeInstancesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>r</requestId><reservationSet><item><reservationId>r-1</reservationId><instancesSet>{items}</instancesSet></item></reservationSet></DescribeInstancesResponse>"
        );
        return Ok(Response::builder()
            .header("content-type", "text/xml")
            .body(Full::from(xml))
            .unwrap());
    };
    *st.calls.entry(op.clone()).or_default() += 1;
    if let Some(code) = st.failing {
        st.failed.push((code.to_string(), invocation));
        let (status, body) = if code == 400 {
            (
                400,
                json!({ "__type": "ThrottlingException", "message": "Rate exceeded" }),
            )
        } else {
            (
                code,
                json!({ "__type": "ServerException", "message": "internal" }),
            )
        };
        return Ok(Response::builder()
            .status(status)
            .header("content-type", "application/x-amz-json-1.1")
            .body(Full::from(body.to_string()))
            .unwrap());
    }
    let input: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let out = match op.as_str() {
        "ListTasks" => {
            // Like moto, serviceName is ignored: tether must filter by group.
            let desired = input["desiredStatus"].as_str().unwrap_or("RUNNING");
            let arns: Vec<String> = st
                .tasks
                .iter()
                .filter(|t| t.desired == desired)
                .map(|t| t.arn.clone())
                .collect();
            let start: usize = input["nextToken"]
                .as_str()
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            let page: Vec<&String> = arns.iter().skip(start).take(100).collect();
            let mut out = json!({ "taskArns": page });
            if start + 100 < arns.len() {
                out["nextToken"] = json!((start + 100).to_string());
            }
            out
        }
        "DescribeTasks" => {
            let wanted: Vec<String> = strings(&input["tasks"]);
            st.largest_describe = st.largest_describe.max(wanted.len());
            if wanted.len() > 100 {
                return Ok(Response::builder()
                    .status(StatusCode::BAD_REQUEST)
                    .header("content-type", "application/x-amz-json-1.1")
                    .body(Full::from(json!({ "__type": "InvalidParameterException", "message": "too many tasks" }).to_string()))
                    .unwrap());
            }
            let tasks: Vec<Value> = st
                .tasks
                .iter()
                .filter(|t| wanted.contains(&t.arn))
                .map(task_json)
                .collect();
            json!({ "tasks": tasks, "failures": [] })
        }
        "ListServices" => {
            let arns: Vec<String> = st
                .services
                .keys()
                .map(|n| format!("arn:aws:ecs:us-east-1:1:service/c/{n}"))
                .collect();
            json!({ "serviceArns": arns })
        }
        "DescribeServices" => {
            let wanted: Vec<String> = strings(&input["services"]);
            let services: Vec<Value> = st
                .services
                .iter()
                .filter(|(n, _)| wanted.iter().any(|w| w.ends_with(&format!("/{n}"))))
                .map(|(n, (tg, cname, cport))| json!({
                    "serviceName": n,
                    "loadBalancers": [{ "targetGroupArn": tg, "containerName": cname, "containerPort": cport }]
                }))
                .collect();
            json!({ "services": services, "failures": [] })
        }
        "DescribeContainerInstances" => {
            let wanted: Vec<String> = strings(&input["containerInstances"]);
            let cis: Vec<Value> = wanted
                .iter()
                .filter_map(|arn| {
                    st.instances
                        .get(arn)
                        .map(|(id, _)| json!({ "containerInstanceArn": arn, "ec2InstanceId": id }))
                })
                .collect();
            json!({ "containerInstances": cis, "failures": [] })
        }
        _ => json!({}),
    };
    Ok(Response::builder()
        .header("content-type", "application/x-amz-json-1.1")
        .body(Full::from(out.to_string()))
        .unwrap())
}

/// Reads a request's head (within a bound) and returns its `amz-sdk-invocation-id`;
/// drops the connection.
async fn read_head(mut stream: tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head)
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("amz-sdk-invocation-id")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_else(|| "none".to_string())
}

/// Waits (bounded) until two calls have failed `how`. tether polls ECS one call at
/// a time, so a second call failed this way means the first one ended in that
/// failure (the SDK gave up on it) and tether went on to poll again: discovery saw
/// the failure and lived with it.
async fn wait_two_calls_failed(fake: &Fake, how: &str) {
    // Back-off between failed polls doubles up to 8 intervals (8 s here).
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let calls: std::collections::HashSet<String> = {
            let st = fake.lock().unwrap();
            st.failed
                .iter()
                .filter(|(h, _)| h == how)
                .map(|(_, id)| id.clone())
                .collect()
        };
        if calls.len() >= 2 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "calls failed {how}: {calls:?}, want two"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn start_fake(fake: Fake) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            if fake.lock().unwrap().down {
                // Read the request's head (to know its call), then close unanswered.
                let fake = fake.clone();
                tokio::spawn(async move {
                    let invocation = read_head(stream).await;
                    fake.lock()
                        .unwrap()
                        .failed
                        .push(("down".into(), invocation));
                });
                continue;
            }
            let fake = fake.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| fake_handle(req, fake.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn ecs_group(name: &str, service: &str, port: u16, endpoint: SocketAddr) -> String {
    format!(
        r#"
[target_group.{name}]
discovery = {{ ecs = {{ cluster = "socket-ecs-cluster", service = "{service}", container_name = "app", container_port = {port}, interval = "1s", region = "us-east-1", endpoint_url = "http://{endpoint}" }} }}
health_check = {{ path = "/health", interval = "200ms", timeout = "100ms", healthy_threshold = 2 }}
deregistration_delay = "30s"
"#
    )
}

fn awsvpc(arn: &str, ip: &str, last: &'static str, desired: &'static str) -> FakeTask {
    FakeTask {
        arn: arn.into(),
        service: "socket-service".into(),
        last,
        desired,
        eni: Some(ip.into()),
        instance: None,
        bindings: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn it_should_follow_ecs_tasks_through_scale_up_draining_and_api_failures() {
    // Three task addresses with the same container port, as awsvpc tasks have.
    // The first binds a free port; the others take the same port on their addresses.
    let b2 = Backend::start_at(SocketAddr::from(([127, 0, 0, 2], 0)), "task-2").await;
    let port = b2.addr.port();
    let b3 = Backend::start_at(SocketAddr::from(([127, 0, 0, 3], port)), "task-3").await;
    let b4 = Backend::start_at(SocketAddr::from(([127, 0, 0, 4], port)), "task-4").await;
    let fake: Fake = Arc::default();
    {
        let mut st = fake.lock().unwrap();
        st.tasks
            .push(awsvpc("arn:task-2", "127.0.0.2", "RUNNING", "RUNNING"));
        st.tasks
            .push(awsvpc("arn:task-3", "127.0.0.3", "PENDING", "RUNNING"));
        // 250 tasks of another service: pages of ListTasks, batches of DescribeTasks.
        for i in 0..250 {
            let mut t = awsvpc(&format!("arn:other-{i}"), "127.0.0.9", "RUNNING", "RUNNING");
            t.service = "other-service".into();
            st.tasks.push(t);
        }
    }
    let endpoint = start_fake(fake.clone()).await;
    let config = format!(
        r#"
[load_balancer]
alb_limits = false
admin = "127.0.0.1:{{admin}}"
[[listener]]
address = "127.0.0.1"
port = {{port}}
default_action = {{ forward = "socket" }}
{}"#,
        ecs_group("socket", "socket-service", port, endpoint)
    );
    let lb = TetherProc::start_with_env(&config, AWS_ENV).await;

    // Only the RUNNING task takes traffic (not the PENDING one, nor other services).
    wait_served(&lb, "/", &["task-2"]).await;
    {
        let st = fake.lock().unwrap();
        assert!(
            st.calls.get("ListTasks").copied().unwrap_or(0) >= 3,
            "paged: {:?}",
            st.calls
        );
        assert!(st.largest_describe <= 100 && st.largest_describe > 0);
    }

    // Scale up: new RUNNING tasks are routed after their first passing check.
    {
        let mut st = fake.lock().unwrap();
        st.tasks[1].last = "RUNNING";
        st.tasks
            .push(awsvpc("arn:task-4", "127.0.0.4", "RUNNING", "RUNNING"));
    }
    wait_served(&lb, "/", &["task-2", "task-3", "task-4"]).await;
    let states = target_states(&lb).await;
    assert_eq!(
        states.get(&port).map(String::as_str),
        Some("healthy"),
        "{states:?}"
    );

    // A task set to STOPPED but still running drains: no new requests.
    fake.lock().unwrap().tasks[0].desired = "STOPPED";
    wait_served(&lb, "/", &["task-3", "task-4"]).await;

    // Throttling, then a 5xx outage, then the endpoint down: in each, calls fail
    // (counted by the fake) and routing keeps the last known targets.
    let both = |seen: HashMap<String, usize>| {
        let mut ids: Vec<String> = seen.into_keys().collect();
        ids.sort();
        ids
    };
    fake.lock().unwrap().failing = Some(400);
    wait_two_calls_failed(&fake, "400").await;
    assert_eq!(both(served_by(&lb, "/", 12).await), ["task-3", "task-4"]);
    fake.lock().unwrap().failing = Some(503);
    wait_two_calls_failed(&fake, "503").await;
    assert_eq!(both(served_by(&lb, "/", 12).await), ["task-3", "task-4"]);
    fake.lock().unwrap().down = true;
    wait_two_calls_failed(&fake, "down").await;
    assert_eq!(both(served_by(&lb, "/", 12).await), ["task-3", "task-4"]);
    // The status page shows the outage: since when, and the last error.
    let outage = discovery_status(&lb, "socket").await;
    let (since, success) = (outage.failing_since_ms, outage.last_success_ms);
    assert!(
        since.is_some() && success.is_some() && since >= success,
        "{outage:?}"
    );
    assert!(
        outage.failures >= 2 && outage.last_error.is_some(),
        "{outage:?}"
    );
    let calls_during_outage = fake
        .lock()
        .unwrap()
        .calls
        .get("ListTasks")
        .copied()
        .unwrap_or(0);

    // Back: discovery resumes (task-3 goes away entirely, and drains).
    {
        let mut st = fake.lock().unwrap();
        st.failing = None;
        st.down = false;
        st.tasks
            .retain(|t| t.arn != "arn:task-3" && t.arn != "arn:task-2");
    }
    wait_served(&lb, "/", &["task-4"]).await;
    let back = discovery_status(&lb, "socket").await;
    assert_eq!(back.failing_since_ms, None, "{back:?}");
    assert!(back.last_success_ms > since, "{back:?}");
    assert!(
        fake.lock()
            .unwrap()
            .calls
            .get("ListTasks")
            .copied()
            .unwrap_or(0)
            > calls_during_outage
    );
    drop((b2, b3, b4));
}

#[tokio::test(flavor = "multi_thread")]
async fn it_should_route_two_ecs_services_by_path_with_bridge_and_awsvpc_networking() {
    let socket = Backend::start_at(SocketAddr::from(([127, 0, 0, 6], 0)), "socket-task").await;
    let port = socket.addr.port();
    // bridge: a dynamic host port on the container instance's address.
    let api = Backend::start_at(SocketAddr::from(([127, 0, 0, 5], 0)), "api-task").await;
    let host_port = api.addr.port();
    let fake: Fake = Arc::default();
    {
        let mut st = fake.lock().unwrap();
        st.tasks
            .push(awsvpc("arn:socket-1", "127.0.0.6", "RUNNING", "RUNNING"));
        st.tasks.push(FakeTask {
            arn: "arn:api-1".into(),
            service: "api-service".into(),
            last: "RUNNING",
            desired: "RUNNING",
            eni: None,
            instance: Some("arn:ci-1".into()),
            bindings: vec![(9100, 40999), (8080, host_port)],
        });
        st.instances
            .insert("arn:ci-1".into(), ("i-0abc".into(), "127.0.0.5".into()));
    }
    let endpoint = start_fake(fake.clone()).await;
    let listener = listener("socket", &[(10, "/api/*", r#"{ forward = "api" }"#)]);
    let config = format!(
        r#"
[load_balancer]
alb_limits = false
admin = "127.0.0.1:{{admin}}"
{listener}{}{}"#,
        ecs_group("socket", "socket-service", port, endpoint),
        ecs_group("api", "api-service", 8080, endpoint),
    );
    let lb = TetherProc::start_with_env(&config, AWS_ENV).await;
    wait_served(&lb, "/api/users", &["api-task"]).await;
    wait_served(&lb, "/", &["socket-task"]).await;
    assert!(
        fake.lock()
            .unwrap()
            .calls
            .get("DescribeInstances")
            .copied()
            .unwrap_or(0)
            >= 1
    );
    // `tether targets` shows the task ARNs.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["targets", "--admin"])
        .arg(format!("127.0.0.1:{}", lb.admin_port))
        .output()
        .expect("tether targets");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("arn:api-1") && table.contains("arn:socket-1"),
        "{table}"
    );
    assert!(
        table.contains(&format!("127.0.0.5  {host_port}")),
        "{table}"
    );
    drop((socket, api));
}

#[tokio::test(flavor = "multi_thread")]
async fn it_should_find_services_by_their_alb_target_group_binding() {
    let web = Backend::start_at(SocketAddr::from(([127, 0, 0, 7], 0)), "bound-task").await;
    let port = web.addr.port();
    let fake: Fake = Arc::default();
    let arn = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/socket/abc";
    {
        let mut st = fake.lock().unwrap();
        let mut t = awsvpc("arn:bound-1", "127.0.0.7", "RUNNING", "RUNNING");
        t.service = "bound-service".into();
        st.tasks.push(t);
        st.services
            .insert("bound-service".into(), (arn.into(), "app".into(), port));
        st.services.insert(
            "unbound-service".into(),
            ("arn:other".into(), "app".into(), 1),
        );
    }
    let endpoint = start_fake(fake.clone()).await;
    let config = format!(
        r#"
[load_balancer]
alb_limits = false
[[listener]]
address = "127.0.0.1"
port = {{port}}
default_action = {{ forward = "socket" }}
[target_group.socket]
discovery = {{ ecs = {{ cluster = "c", target_group_arn = "{arn}", interval = "1s", region = "us-east-1", endpoint_url = "http://{endpoint}" }} }}
health_check = {{ path = "/health", interval = "200ms", timeout = "100ms" }}
"#
    );
    let lb = TetherProc::start_with_env(&config, AWS_ENV).await;
    wait_served(&lb, "/", &["bound-task"]).await;
    assert!(
        fake.lock()
            .unwrap()
            .calls
            .get("DescribeServices")
            .copied()
            .unwrap_or(0)
            >= 1
    );
    drop(web);
}

#[tokio::test]
async fn it_should_refuse_a_reload_that_changes_discovery() {
    let b = Backend::start("static").await;
    let static_group = format!(
        "[load_balancer]\nadmin = \"127.0.0.1:{{admin}}\"\n[[listener]]\naddress = \"127.0.0.1\"\nport = {{port}}\ndefault_action = {{ forward = \"web\" }}\n[target_group.web]\ntargets = [\"{}\"]\n",
        b.addr
    );
    let lb = TetherProc::start(&static_group).await;
    let discovering = static_group.replace(
        &format!("targets = [\"{}\"]", b.addr),
        "discovery = { ecs = { cluster = \"c\", service = \"s\", container_port = 80, region = \"us-east-1\", endpoint_url = \"http://127.0.0.1:9\" } }",
    );
    lb.write_config(&discovering);
    let admin = SocketAddr::from(([127, 0, 0, 1], lb.admin_port));
    let _ = target_states(&lb).await; // the admin API is up
    let r = Client::connect(admin)
        .await
        .send(request("POST", "/reload", &[]))
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains("target group discovery changed; restart"),
        "{}",
        r.text()
    );
    assert_eq!(
        Client::connect(lb.addr()).await.get("/").await.text(),
        "static"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn it_should_follow_an_ecs_group_and_a_file_group_side_by_side() {
    let task = Backend::start_at(SocketAddr::from(([127, 0, 0, 8], 0)), "ecs-task").await;
    let port = task.addr.port();
    let listed = Backend::start("file-target").await;
    let fake: Fake = Arc::default();
    fake.lock()
        .unwrap()
        .tasks
        .push(awsvpc("arn:ecs-task", "127.0.0.8", "RUNNING", "RUNNING"));
    let endpoint = start_fake(fake.clone()).await;
    let listener = listener("socket", &[(10, "/files/*", r#"{ forward = "files" }"#)]);
    let config = format!(
        r#"
[load_balancer]
alb_limits = false
admin = "127.0.0.1:{{admin}}"
{listener}{}
[target_group.files]
discovery = {{ file = {{ path = "targets.txt", interval = "200ms" }} }}
health_check = {{ path = "/health", interval = "200ms", timeout = "100ms", healthy_threshold = 2 }}
"#,
        ecs_group("socket", "socket-service", port, endpoint),
    );
    let lb = TetherProc::start_with_env(&config, AWS_ENV).await;
    let file = lb.config_path.with_file_name("targets.txt");
    std::fs::write(&file, format!("{}\n", listed.addr)).unwrap();
    wait_served(&lb, "/", &["ecs-task"]).await;
    wait_served(&lb, "/files/a", &["file-target"]).await;

    // A bad file fails its own group's polls only; both keep serving.
    std::fs::write(&file, "not a target\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while discovery_status(&lb, "files")
        .await
        .failing_since_ms
        .is_none()
    {
        assert!(Instant::now() < deadline, "the bad file was never seen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let files = discovery_status(&lb, "files").await;
    assert!(
        files.last_error.as_deref().is_some_and(|e| e.ends_with(
            "targets.txt:1:1: \"not a target\": one IP:port a line (comments start with #)"
        )),
        "{files:?}"
    );
    let socket = discovery_status(&lb, "socket").await;
    assert!(
        socket.failing_since_ms.is_none() && socket.targets == 1,
        "{socket:?}"
    );
    wait_served(&lb, "/", &["ecs-task"]).await;
    wait_served(&lb, "/files/a", &["file-target"]).await;
    drop((task, listed));
}
