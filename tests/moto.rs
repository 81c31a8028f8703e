//! ECS discovery against an independent implementation of the ECS and EC2 APIs:
//! moto's server mode (PyPI `moto[server]`, pinned in tests/moto/requirements.txt,
//! installed in `.venv/moto` by `scripts/setup --tests`), started on 127.0.0.1 and
//! stopped when the test ends.
//!
//! The test fills moto through the real aws-sdk-ecs/aws-sdk-ec2 clients, starts tether
//! with discovery pointed at moto, and compares tether's discovered targets (through
//! the admin API, as `tether targets` shows them) with what moto's own DescribeTasks
//! says. moto gives awsvpc tasks random 10.x addresses, so health checks are off and
//! no request is ever sent through tether: the discovered list is asserted, nothing
//! connects to those addresses. Credentials are static dummies and instance metadata
//! is disabled.
//!
//! moto's task progression is frozen (`set-transition` manual, a tick count that is
//! never reached): by default each DescribeTasks walks a task one step towards STOPPED.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_ecs::types::{AwsVpcConfiguration, LaunchType, LoadBalancer, NetworkConfiguration};
use aws_sdk_ecs::types::{ContainerDefinition, NetworkMode, PortMapping};
use common::*;

const TG_ARN: &str =
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/socket/0123456789abcdef";

/// A moto server on a loopback port, killed on drop.
struct Moto {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_server_path() -> PathBuf {
    if let Some(p) = std::env::var_os("TETHER_MOTO_SERVER") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/moto/bin/moto_server")
}

async fn start_moto() -> Moto {
    let path = moto_server_path();
    assert!(
        path.exists(),
        "{} not found: run `scripts/setup --tests` (it installs moto[server] in .venv/moto)",
        path.display()
    );
    // Port 0: moto (werkzeug) binds a free port and says which on stderr,
    // " * Running on http://127.0.0.1:PORT"; no other test can take it meanwhile.
    let mut child = Command::new(&path)
        .args(["-H", "127.0.0.1", "-p", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn moto_server");
    let stderr = child.stderr.take().expect("moto stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    // Reads moto's stderr to its end (it logs every request there, and a full pipe
    // would stall it), passing on the address line.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.split("Running on http://").nth(1) {
                let _ = tx.send(addr.trim().to_string());
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(60));
    let mut moto = Moto {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    // On failure the panic drops (kills) moto.
    moto.addr = match addr.ok().and_then(|a| a.parse().ok()) {
        Some(a) => a,
        None => panic!("moto_server did not say where it listens"),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(s) = tokio::net::TcpStream::connect(moto.addr).await {
            let mut c = Client::over_io(s, &moto.addr.to_string()).await;
            if let Ok(r) = c.try_send(request("GET", "/moto-api/data.json", &[])).await {
                if r.status == 200 {
                    break;
                }
            }
        }
        assert!(Instant::now() < deadline, "moto_server did not start");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Freeze task progression: a task only moves when the test stops it.
    let body =
        r#"{"model_name":"ecs::task","transition":{"progression":"manual","times":1000000000}}"#;
    let mut req = request_with_body(
        "POST",
        "/moto-api/state-manager/set-transition",
        full(bytes::Bytes::from_static(body.as_bytes())),
    );
    req.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    let r = Client::connect(moto.addr).await.send(req).await;
    assert!(r.status.is_success(), "set-transition: {}", r.status);
    moto
}

fn sdk_clients(moto: &Moto) -> (aws_sdk_ecs::Client, aws_sdk_ec2::Client) {
    let http = tether::discovery::ecs::sdk_http_client();
    let creds =
        aws_credential_types::Credentials::new("AKIDTETHERTEST", "secret", None, None, "test");
    let url = format!("http://{}", moto.addr);
    let region = aws_sdk_ecs::config::Region::new("us-east-1");
    let ecs = aws_sdk_ecs::Config::builder()
        .behavior_version(aws_sdk_ecs::config::BehaviorVersion::latest())
        .region(region.clone())
        .endpoint_url(&url)
        .credentials_provider(creds.clone())
        .http_client(http.clone())
        .build();
    let ec2 = aws_sdk_ec2::Config::builder()
        .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
        .region(aws_sdk_ec2::config::Region::new("us-east-1"))
        .endpoint_url(&url)
        .credentials_provider(creds)
        .http_client(http)
        .build();
    (
        aws_sdk_ecs::Client::from_conf(ecs),
        aws_sdk_ec2::Client::from_conf(ec2),
    )
}

/// What moto says the targets of `service` are: `ip:3000 task-arn` of its RUNNING
/// awsvpc tasks, from DescribeTasks' ENI attachment.
async fn moto_targets(ecs: &aws_sdk_ecs::Client, service: &str) -> BTreeSet<String> {
    let arns = ecs
        .list_tasks()
        .cluster("socket-ecs-cluster")
        .send()
        .await
        .expect("ListTasks")
        .task_arns()
        .to_vec();
    let mut out = BTreeSet::new();
    for chunk in arns.chunks(100) {
        let tasks = ecs
            .describe_tasks()
            .cluster("socket-ecs-cluster")
            .set_tasks(Some(chunk.to_vec()))
            .send()
            .await
            .expect("DescribeTasks");
        for t in tasks.tasks() {
            if t.group() != Some(&format!("service:{service}"))
                || t.last_status() != Some("RUNNING")
            {
                continue;
            }
            let ip = t
                .attachments()
                .iter()
                .flat_map(|a| a.details())
                .find(|d| d.name() == Some("privateIPv4Address"))
                .and_then(|d| d.value())
                .expect("moto gives awsvpc tasks an ENI address");
            out.insert(format!("{ip}:3000 {}", t.task_arn().expect("task ARN")));
        }
    }
    out
}

/// tether's discovered targets of `group` as `ip:port task-arn` (draining ones
/// marked), from the admin API.
async fn tether_targets(lb: &TetherProc, group: &str) -> BTreeSet<String> {
    let admin = SocketAddr::from(([127, 0, 0, 1], lb.admin_port));
    let groups = tether::admin::fetch_targets(admin)
        .await
        .expect("admin /targets");
    groups
        .iter()
        .filter(|g| g.name == group)
        .flat_map(|g| g.targets.iter())
        .filter(|t| t.state != "draining")
        .map(|t| {
            format!(
                "{}:{} {}",
                t.id,
                t.port,
                t.task_arn.as_deref().unwrap_or("-")
            )
        })
        .collect()
}

async fn wait_targets(lb: &TetherProc, group: &str, want: &BTreeSet<String>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = tether_targets(lb, group).await;
        if &got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "group {group}: tether has\n{got:#?}\nmoto has\n{want:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn run_tasks(
    ecs: &aws_sdk_ecs::Client,
    service: &str,
    count: i32,
    network: &NetworkConfiguration,
) {
    let mut left = count;
    while left > 0 {
        // ECS runs at most 10 tasks per call.
        let n = left.min(10);
        ecs.run_task()
            .cluster("socket-ecs-cluster")
            .task_definition("socket")
            .launch_type(LaunchType::Fargate)
            .group(format!("service:{service}"))
            .count(n)
            .network_configuration(network.clone())
            .send()
            .await
            .expect("RunTask");
        left -= n;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn it_should_discover_the_same_tasks_that_moto_reports() {
    let moto = start_moto().await;
    let (ecs, ec2) = sdk_clients(&moto);

    ecs.create_cluster()
        .cluster_name("socket-ecs-cluster")
        .send()
        .await
        .expect("CreateCluster");
    ecs.register_task_definition()
        .family("socket")
        .network_mode(NetworkMode::Awsvpc)
        .container_definitions(
            ContainerDefinition::builder()
                .name("socket-container-service")
                .image("socket:latest")
                .memory(128)
                .port_mappings(PortMapping::builder().container_port(3000).build())
                .build(),
        )
        .send()
        .await
        .expect("RegisterTaskDefinition");
    let subnet = ec2
        .describe_subnets()
        .send()
        .await
        .expect("DescribeSubnets")
        .subnets()
        .first()
        .and_then(|s| s.subnet_id())
        .expect("moto's default subnet")
        .to_string();
    let group = ec2
        .describe_security_groups()
        .send()
        .await
        .expect("DescribeSecurityGroups")
        .security_groups()
        .first()
        .and_then(|g| g.group_id())
        .expect("moto's default security group")
        .to_string();
    let network = NetworkConfiguration::builder()
        .awsvpc_configuration(
            AwsVpcConfiguration::builder()
                .subnets(subnet)
                .security_groups(group)
                .build()
                .expect("awsvpc configuration"),
        )
        .build();
    // The Socket.IO service is bound to the ALB target group; a second service in the
    // same cluster is not, and its tasks must never show up.
    for (service, binding) in [("socket-service", true), ("api-service", false)] {
        let mut create = ecs
            .create_service()
            .cluster("socket-ecs-cluster")
            .service_name(service)
            .task_definition("socket")
            .desired_count(0)
            .launch_type(LaunchType::Fargate)
            .network_configuration(network.clone());
        if binding {
            create = create.load_balancers(
                LoadBalancer::builder()
                    .target_group_arn(TG_ARN)
                    .container_name("socket-container-service")
                    .container_port(3000)
                    .build(),
            );
        }
        create.send().await.expect("CreateService");
    }
    // More than one DescribeTasks batch of 100 for the socket service.
    run_tasks(&ecs, "socket-service", 103, &network).await;
    run_tasks(&ecs, "api-service", 4, &network).await;

    let endpoint = format!("http://{}", moto.addr);
    let listener = listener(
        "by_service",
        &[(1, "/bound/*", r#"{ forward = "by_arn" }"#)],
    );
    let config = format!(
        r#"
[load_balancer]
alb_limits = false
admin = "127.0.0.1:{{admin}}"
{listener}[target_group.by_service]
discovery = {{ ecs = {{ cluster = "socket-ecs-cluster", service = "socket-service", container_name = "socket-container-service", container_port = 3000, interval = "1s", region = "us-east-1", endpoint_url = "{endpoint}" }} }}
health_check = {{ enabled = false }}
deregistration_delay = "1s"
[target_group.by_arn]
discovery = {{ ecs = {{ cluster = "socket-ecs-cluster", target_group_arn = "{TG_ARN}", interval = "1s", region = "us-east-1", endpoint_url = "{endpoint}" }} }}
health_check = {{ enabled = false }}
deregistration_delay = "1s"
"#
    );
    let lb = TetherProc::start_with_env(&config, AWS_ENV).await;

    let want = moto_targets(&ecs, "socket-service").await;
    assert_eq!(want.len(), 103, "moto runs the 103 tasks: {want:#?}");
    assert!(
        want.iter().all(|t| t.starts_with("10.")),
        "moto's ENI addresses: {want:#?}"
    );
    wait_targets(&lb, "by_service", &want).await;
    wait_targets(&lb, "by_arn", &want).await;

    // Scale up, and stop two tasks (moto moves a stopped task straight to STOPPED:
    // it has no "desired STOPPED, still running" phase).
    run_tasks(&ecs, "socket-service", 2, &network).await;
    let stopped: Vec<String> = want
        .iter()
        .take(2)
        .map(|t| t.split(' ').nth(1).unwrap_or_default().to_string())
        .collect();
    for arn in &stopped {
        ecs.stop_task()
            .cluster("socket-ecs-cluster")
            .task(arn)
            .send()
            .await
            .expect("StopTask");
    }
    let want = moto_targets(&ecs, "socket-service").await;
    assert_eq!(want.len(), 103);
    assert!(stopped
        .iter()
        .all(|arn| !want.iter().any(|t| t.ends_with(arn.as_str()))));
    wait_targets(&lb, "by_service", &want).await;
    wait_targets(&lb, "by_arn", &want).await;
}
