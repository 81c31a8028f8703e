//! ECS as a discovery source: the tasks of a service (or of the services bound to an
//! ALB target group) become a group's targets, following deployments.
//!
//! [`targets_from_tasks`] is the whole mapping, a pure function over the SDK's own
//! types; [`EcsSource`] makes the calls (ListServices/DescribeServices for a target
//! group ARN, ListTasks paginated, DescribeTasks in batches of 100,
//! DescribeContainerInstances + EC2 DescribeInstances for bridge and host networking,
//! cached).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ecs::types::{DesiredStatus, Task};

use super::{Discovered, DiscoveryError, EcsDiscovery, Source};
/// A service's binding: which container and port of its tasks take traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub service: String,
    pub container_name: Option<String>,
    pub container_port: u16,
}

/// The ENI address of an awsvpc (or Fargate) task.
fn eni_address(task: &Task) -> Option<IpAddr> {
    let from_attachment = task
        .attachments()
        .iter()
        .filter(|a| a.r#type() == Some("ElasticNetworkInterface"))
        .flat_map(|a| a.details())
        .find(|d| d.name() == Some("privateIPv4Address"))
        .and_then(|d| d.value())
        .and_then(|v| v.parse().ok());
    from_attachment.or_else(|| {
        task.containers()
            .iter()
            .flat_map(|c| c.network_interfaces())
            .find_map(|n| n.private_ipv4_address())
            .and_then(|v| v.parse().ok())
    })
}

/// Maps tasks to targets, as ALB registers them:
/// - only tasks of the binding's service (`group == "service:<name>"`) whose
///   `lastStatus` is RUNNING take part (PENDING ones would get traffic too early);
/// - a RUNNING task whose `desiredStatus` is STOPPED is draining;
/// - awsvpc: the task ENI's private IPv4 and the container port;
/// - bridge and host: the container instance's private IP (`instance_ips`, by
///   container instance ARN) and the host port bound to the container port (dynamic
///   ports included).
pub fn targets_from_tasks(
    tasks: &[Task],
    binding: &Binding,
    instance_ips: &HashMap<String, IpAddr>,
) -> Vec<Discovered> {
    let group = format!("service:{}", binding.service);
    let mut out = Vec::new();
    for task in tasks {
        if task.group() != Some(group.as_str()) || task.last_status() != Some("RUNNING") {
            continue;
        }
        let Some(task_arn) = task.task_arn() else {
            continue;
        };
        let containers = task.containers().iter().filter(|c| {
            binding
                .container_name
                .as_deref()
                .is_none_or(|name| c.name() == Some(name))
        });
        let mut addr = None;
        for container in containers {
            let bound = container
                .network_bindings()
                .iter()
                .find(|b| b.container_port() == Some(i32::from(binding.container_port)));
            let host_ip = task
                .container_instance_arn()
                .and_then(|arn| instance_ips.get(arn))
                .copied();
            addr = match (eni_address(task), bound, host_ip) {
                // awsvpc: the task has its own address.
                (Some(ip), _, _) => Some(SocketAddr::new(ip, binding.container_port)),
                // bridge / host: the instance's address and the bound host port.
                (None, Some(b), Some(ip)) => b
                    .host_port()
                    .and_then(|p| u16::try_from(p).ok())
                    .filter(|p| *p != 0)
                    .map(|p| SocketAddr::new(ip, p)),
                _ => None,
            };
            if addr.is_some() {
                break;
            }
        }
        if let Some(addr) = addr {
            out.push(Discovered {
                addr,
                task_arn: Some(task_arn.to_string()),
                draining: task.desired_status() == Some("STOPPED"),
            });
        }
    }
    out.sort_by_key(|d| d.addr);
    out.dedup_by(|a, b| a.addr == b.addr);
    out
}

// === Calls ===

fn call_err<E: std::fmt::Display>(call: &'static str) -> impl Fn(E) -> DiscoveryError {
    move |e| DiscoveryError::Call {
        call,
        message: e.to_string(),
    }
}

/// The ECS (and EC2) side of one group.
pub struct EcsSource {
    config: EcsDiscovery,
    ecs: aws_sdk_ecs::Client,
    ec2: aws_sdk_ec2::Client,
    /// Container instance ARN → instance private IP (instances outlive tasks).
    instance_ips: HashMap<String, IpAddr>,
}

/// The HTTP client tether's AWS SDK clients use: rustls with ring (no OpenSSL, no
/// aws-lc).
pub fn sdk_http_client() -> aws_sdk_ecs::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

impl EcsSource {
    /// Clients from the standard AWS chain (env, profile, ECS task role, instance
    /// metadata), over rustls (ring), with the configured region and endpoint.
    pub async fn new(config: EcsDiscovery) -> EcsSource {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(sdk_http_client())
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(2))
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .operation_timeout(Duration::from_secs(10))
                    .connect_timeout(Duration::from_secs(3))
                    .build(),
            );
        if let Some(region) = &config.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(url) = &config.endpoint_url {
            loader = loader.endpoint_url(url.clone());
        }
        let sdk = loader.load().await;
        EcsSource {
            ecs: aws_sdk_ecs::Client::new(&sdk),
            ec2: aws_sdk_ec2::Client::new(&sdk),
            config,
            instance_ips: HashMap::new(),
        }
    }

    /// The services (and their container and port) whose tasks are targets.
    async fn bindings(&self) -> Result<Vec<Binding>, DiscoveryError> {
        let c = &self.config;
        if let Some(service) = &c.service {
            return Ok(vec![Binding {
                service: service.clone(),
                container_name: c.container_name.clone(),
                container_port: c.container_port.unwrap_or(80),
            }]);
        }
        let Some(arn) = &c.target_group_arn else {
            return Ok(Vec::new());
        };
        let mut names = Vec::new();
        let mut pages = self
            .ecs
            .list_services()
            .cluster(&c.cluster)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(call_err("ListServices"))?;
            names.extend(page.service_arns().iter().cloned());
        }
        let mut bindings = Vec::new();
        for chunk in names.chunks(10) {
            let out = self
                .ecs
                .describe_services()
                .cluster(&c.cluster)
                .set_services(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(call_err("DescribeServices"))?;
            for s in out.services() {
                for lb in s.load_balancers() {
                    if lb.target_group_arn() == Some(arn.as_str()) {
                        if let (Some(name), Some(port)) = (s.service_name(), lb.container_port()) {
                            bindings.push(Binding {
                                service: name.to_string(),
                                container_name: lb.container_name().map(str::to_string),
                                container_port: u16::try_from(port).unwrap_or(0),
                            });
                        }
                    }
                }
            }
        }
        Ok(bindings)
    }

    /// Every task of a service that may be running: desired RUNNING, and desired
    /// STOPPED (still running ones drain).
    async fn tasks(&self, service: &str) -> Result<Vec<Task>, DiscoveryError> {
        let mut arns = Vec::new();
        for desired in [DesiredStatus::Running, DesiredStatus::Stopped] {
            let mut pages = self
                .ecs
                .list_tasks()
                .cluster(&self.config.cluster)
                .service_name(service)
                .desired_status(desired)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(call_err("ListTasks"))?;
                arns.extend(page.task_arns().iter().cloned());
            }
        }
        let mut tasks = Vec::new();
        for chunk in arns.chunks(100) {
            let out = self
                .ecs
                .describe_tasks()
                .cluster(&self.config.cluster)
                .set_tasks(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(call_err("DescribeTasks"))?;
            tasks.extend(out.tasks().iter().cloned());
        }
        Ok(tasks)
    }

    /// Learns the private IP of container instances not yet known.
    async fn resolve_instances(&mut self, tasks: &[Task]) -> Result<(), DiscoveryError> {
        let missing: Vec<String> = tasks
            .iter()
            .filter(|t| eni_address(t).is_none())
            .filter_map(|t| t.container_instance_arn())
            .filter(|arn| !self.instance_ips.contains_key(*arn))
            .map(str::to_string)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        for chunk in missing.chunks(100) {
            let out = self
                .ecs
                .describe_container_instances()
                .cluster(&self.config.cluster)
                .set_container_instances(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(call_err("DescribeContainerInstances"))?;
            let by_instance: HashMap<String, String> = out
                .container_instances()
                .iter()
                .filter_map(|ci| {
                    Some((
                        ci.ec2_instance_id()?.to_string(),
                        ci.container_instance_arn()?.to_string(),
                    ))
                })
                .collect();
            if by_instance.is_empty() {
                continue;
            }
            let out = self
                .ec2
                .describe_instances()
                .set_instance_ids(Some(by_instance.keys().cloned().collect()))
                .send()
                .await
                .map_err(call_err("DescribeInstances"))?;
            for instance in out.reservations().iter().flat_map(|r| r.instances()) {
                let (Some(id), Some(ip)) = (instance.instance_id(), instance.private_ip_address())
                else {
                    continue;
                };
                if let (Some(arn), Ok(ip)) = (by_instance.get(id), ip.parse()) {
                    self.instance_ips.insert(arn.clone(), ip);
                }
            }
        }
        Ok(())
    }

    /// One full look at ECS.
    async fn look(&mut self) -> Result<Vec<Discovered>, DiscoveryError> {
        let mut out = Vec::new();
        for binding in self.bindings().await? {
            let tasks = self.tasks(&binding.service).await?;
            self.resolve_instances(&tasks).await?;
            out.extend(targets_from_tasks(&tasks, &binding, &self.instance_ips));
        }
        out.sort_by_key(|d| d.addr);
        Ok(out)
    }
}

#[async_trait]
impl Source for EcsSource {
    async fn poll(&mut self) -> Result<Vec<Discovered>, DiscoveryError> {
        self.look().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecs::types::{
        Attachment, Container, KeyValuePair, NetworkBinding, NetworkInterface,
    };

    fn binding() -> Binding {
        Binding {
            service: "socket-service".into(),
            container_name: Some("socket-container-service".into()),
            container_port: 3000,
        }
    }

    fn task(arn: &str, last: &str, desired: &str) -> aws_sdk_ecs::types::builders::TaskBuilder {
        Task::builder()
            .task_arn(arn)
            .group("service:socket-service")
            .last_status(last)
            .desired_status(desired)
    }

    fn awsvpc_attachment(ip: &str) -> Attachment {
        Attachment::builder()
            .r#type("ElasticNetworkInterface")
            .details(
                KeyValuePair::builder()
                    .name("subnetId")
                    .value("subnet-1")
                    .build(),
            )
            .details(
                KeyValuePair::builder()
                    .name("privateIPv4Address")
                    .value(ip)
                    .build(),
            )
            .build()
    }

    fn container(name: &str) -> aws_sdk_ecs::types::builders::ContainerBuilder {
        Container::builder().name(name)
    }

    #[test]
    fn it_should_map_awsvpc_tasks_from_the_eni_attachment_or_the_container() {
        let tasks = [
            task("arn:t1", "RUNNING", "RUNNING")
                .attachments(awsvpc_attachment("10.0.1.12"))
                .containers(container("socket-container-service").build())
                .build(),
            task("arn:t2", "RUNNING", "RUNNING")
                .containers(
                    container("socket-container-service")
                        .network_interfaces(
                            NetworkInterface::builder()
                                .private_ipv4_address("10.0.1.13")
                                .build(),
                        )
                        .build(),
                )
                .build(),
        ];
        let got = targets_from_tasks(&tasks, &binding(), &HashMap::new());
        let addrs: Vec<String> = got.iter().map(|d| d.addr.to_string()).collect();
        assert_eq!(addrs, ["10.0.1.12:3000", "10.0.1.13:3000"]);
        assert!(got.iter().all(|d| !d.draining));
    }

    #[test]
    fn it_should_map_bridge_tasks_to_the_host_port_of_the_right_container() {
        let bind = |cport: i32, hport: i32| {
            NetworkBinding::builder()
                .container_port(cport)
                .host_port(hport)
                .build()
        };
        let tasks = [task("arn:t1", "RUNNING", "RUNNING")
            .container_instance_arn("arn:ci-1")
            .containers(
                container("sidecar")
                    .network_bindings(bind(3000, 40000))
                    .build(),
            )
            .containers(
                container("socket-container-service")
                    .network_bindings(bind(9100, 40001))
                    .network_bindings(bind(3000, 32768))
                    .build(),
            )
            .build()];
        let ips = HashMap::from([("arn:ci-1".to_string(), "10.0.2.5".parse().unwrap())]);
        let got = targets_from_tasks(&tasks, &binding(), &ips);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].addr.to_string(), "10.0.2.5:32768");
        // Without the instance's address there is no target (never a guess).
        assert!(targets_from_tasks(&tasks, &binding(), &HashMap::new()).is_empty());
    }

    #[test]
    fn it_should_route_only_running_tasks_and_drain_stopping_ones() {
        let t = |arn: &str, last: &str, desired: &str, ip: &str| {
            task(arn, last, desired)
                .attachments(awsvpc_attachment(ip))
                .containers(container("socket-container-service").build())
                .build()
        };
        let tasks = [
            t("arn:a", "RUNNING", "RUNNING", "10.0.0.1"),
            t("arn:b", "PENDING", "RUNNING", "10.0.0.2"),
            t("arn:c", "PROVISIONING", "RUNNING", "10.0.0.3"),
            t("arn:d", "RUNNING", "STOPPED", "10.0.0.4"),
            t("arn:e", "STOPPED", "STOPPED", "10.0.0.5"),
            t("arn:f", "DEACTIVATING", "STOPPED", "10.0.0.6"),
            t("arn:g", "ACTIVATING", "RUNNING", "10.0.0.7"),
        ];
        let got = targets_from_tasks(&tasks, &binding(), &HashMap::new());
        let summary: Vec<(String, bool)> = got
            .iter()
            .map(|d| (d.task_arn.clone().unwrap_or_default(), d.draining))
            .collect();
        assert_eq!(
            summary,
            [("arn:a".to_string(), false), ("arn:d".to_string(), true)]
        );
    }

    #[test]
    fn it_should_skip_tasks_of_other_services_and_tasks_missing_fields() {
        let tasks = [
            Task::builder()
                .task_arn("arn:other")
                .group("service:other")
                .last_status("RUNNING")
                .desired_status("RUNNING")
                .attachments(awsvpc_attachment("10.0.0.9"))
                .containers(container("socket-container-service").build())
                .build(),
            task("arn:no-container", "RUNNING", "RUNNING")
                .attachments(awsvpc_attachment("10.0.0.10"))
                .containers(container("another-name").build())
                .build(),
            task("arn:no-address", "RUNNING", "RUNNING")
                .containers(container("socket-container-service").build())
                .build(),
            Task::builder()
                .group("service:socket-service")
                .last_status("RUNNING")
                .build(),
            task("arn:bad-ip", "RUNNING", "RUNNING")
                .attachments(awsvpc_attachment("not-an-ip"))
                .containers(container("socket-container-service").build())
                .build(),
        ];
        assert!(targets_from_tasks(&tasks, &binding(), &HashMap::new()).is_empty());
    }
}
