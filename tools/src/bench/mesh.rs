//! The real mesh, one process per service as in production (`guichet serve
//! instruction`, `serve intake-web`, the other channel services, `serve notifier`, `serve gateway`), on the bench's own
//! vhost and database and on free ports, so each process's CPU time and
//! memory can be read on its own.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// One service process of the mesh.
pub struct Service {
    pub name: &'static str,
    child: Child,
}

impl Service {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// The running mesh: where to reach it, and its processes.
pub struct Mesh {
    pub gateway_url: String,
    pub intake_web_url: String,
    pub services: Vec<Service>,
    pub logs: PathBuf,
    /// The development issuer the gateway checks the bench's tokens against.
    issuer: guichet_identity::dev::DevIssuer,
    /// Where the notifier sends its e-mail, as to a site's relay.
    pub mail: super::mail_relay::MailRelay,
    /// Stops what runs in the bench's own process: the issuer and the relay.
    in_process_stop: guichet_kit::shutdown::Shutdown,
    database_url: String,
    data_dir: PathBuf,
}

/// A process to start: its name in the mesh, the service it serves, and the
/// address variable it listens on when it is one of several instances.
type Process = (
    &'static str,
    &'static str,
    Option<(&'static str, SocketAddr)>,
);

/// Loopback ports picked for the mesh's processes. Each stays bound here
/// until the processes start, so that no two picks, and nothing else this
/// process binds meanwhile (the development issuer, on port 0), get the
/// same port: a port let go at once could be handed out again, and the
/// service given it failed to start. Another program could still take one
/// between the release and the service's bind; start-up then fails and
/// says which.
#[derive(Default)]
struct Ports(Vec<TcpListener>);

impl Ports {
    fn pick(&mut self) -> anyhow::Result<SocketAddr> {
        let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
        let addr = listener.local_addr()?;
        self.0.push(listener);
        Ok(addr)
    }
}

impl Mesh {
    /// Starts the services and waits until the gateway's `/readyz` answers
    /// 200 (every service behind it answering its health check). With
    /// `instances` above 1, that many processes of intake-web and of
    /// instruction: the gateway balances its calls over the intake-web ones,
    /// the instructions compete for the queue.
    pub async fn start(
        database_url: &str,
        amqp_url: &str,
        work: &Path,
        log_filter: &str,
        binary: Option<&Path>,
        instances: usize,
        mail_latency: Duration,
    ) -> anyhow::Result<Mesh> {
        const INSTRUCTIONS: [&str; 4] = [
            "instruction",
            "instruction-2",
            "instruction-3",
            "instruction-4",
        ];
        const INTAKES: [&str; 4] = ["intake-web", "intake-web-2", "intake-web-3", "intake-web-4"];
        anyhow::ensure!(
            (1..=INSTRUCTIONS.len()).contains(&instances),
            "--instances: 1 to {}",
            INSTRUCTIONS.len()
        );
        let exe = match binary {
            Some(path) => path.to_path_buf(),
            None => std::env::current_exe().context("finding the guichet binary")?,
        };
        let mut ports = Ports::default();
        let http = ports.pick()?;
        let intake_webs = (0..instances)
            .map(|_| ports.pick())
            .collect::<anyhow::Result<Vec<_>>>()?;
        let instructions = (0..instances)
            .map(|_| ports.pick())
            .collect::<anyhow::Result<Vec<_>>>()?;
        let (intake_web, instruction) = (intake_webs[0], instructions[0]);
        let list = |ports: &[SocketAddr]| {
            ports
                .iter()
                .map(|p| format!("http://{p}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let intake_ccc = ports.pick()?;
        let intake_pan = ports.pick()?;
        let intake_postal = ports.pick()?;
        let notifier = ports.pick()?;
        let logs = work.join("logs");
        std::fs::create_dir_all(&logs)?;
        let in_process_stop = guichet_kit::shutdown::Shutdown::new();
        let issuer = guichet_identity::dev::DevIssuer::start(
            ([127, 0, 0, 1], 0).into(),
            guichet_identity::dev::DevConfig::standard(guichet_kit::clock::system()),
            in_process_stop.clone(),
        )
        .await
        .context("starting the development issuer")?;
        let mail =
            super::mail_relay::MailRelay::start(in_process_stop.clone(), mail_latency).await?;
        let common = [
            ("GUICHET_OIDC_ISSUER", issuer.issuer().to_string()),
            ("GUICHET_DATABASE_URL", database_url.to_string()),
            ("GUICHET_AMQP_URL", amqp_url.to_string()),
            (
                "GUICHET_DATA_DIR",
                work.join("data").to_string_lossy().into_owned(),
            ),
            ("GUICHET_HTTP_ADDR", http.to_string()),
            ("GUICHET_INTAKE_WEB_ADDR", intake_web.to_string()),
            ("GUICHET_INSTRUCTION_ADDR", instruction.to_string()),
            ("GUICHET_INTAKE_WEB_URL", list(&intake_webs)),
            ("GUICHET_INSTRUCTION_URL", list(&instructions)),
            ("GUICHET_INTAKE_CCC_ADDR", intake_ccc.to_string()),
            ("GUICHET_INTAKE_PAN_ADDR", intake_pan.to_string()),
            ("GUICHET_INTAKE_CCC_URL", format!("http://{intake_ccc}")),
            ("GUICHET_INTAKE_PAN_URL", format!("http://{intake_pan}")),
            ("GUICHET_INTAKE_POSTAL_ADDR", intake_postal.to_string()),
            (
                "GUICHET_INTAKE_POSTAL_URL",
                format!("http://{intake_postal}"),
            ),
            ("GUICHET_NOTIFIER_ADDR", notifier.to_string()),
            ("GUICHET_NOTIFIER_URL", format!("http://{notifier}")),
            ("GUICHET_SMTP_URL", mail.url()),
            ("RUST_LOG", log_filter.to_string()),
        ];
        let mut services = Vec::new();
        // Instruction first: it declares the topology its queue needs.
        let mut processes: Vec<Process> = Vec::new();
        for (i, addr) in instructions.iter().enumerate() {
            processes.push((
                INSTRUCTIONS[i],
                "instruction",
                Some(("GUICHET_INSTRUCTION_ADDR", *addr)),
            ));
        }
        for (i, addr) in intake_webs.iter().enumerate() {
            processes.push((
                INTAKES[i],
                "intake-web",
                Some(("GUICHET_INTAKE_WEB_ADDR", *addr)),
            ));
        }
        for (name, service) in [
            // Not loaded yet, but the gateway is ready only when every
            // channel service behind it answers.
            ("intake-ccc", "intake-ccc"),
            ("intake-pan", "intake-pan"),
            ("intake-postal", "intake-postal"),
            // Tells every filer, as in production (e-mails to the relay above).
            ("notifier", "notifier"),
            ("gateway", "gateway"),
        ] {
            processes.push((name, service, None));
        }
        // The gateway serves its metrics on its own address.
        let metrics_addrs = processes
            .iter()
            .map(|(_, service, _)| (*service != "gateway").then(|| ports.pick()).transpose())
            .collect::<anyhow::Result<Vec<_>>>()?;
        // Let the ports go: the services bind them now.
        drop(ports);
        for ((name, service, own_addr), metrics_addr) in processes.into_iter().zip(metrics_addrs) {
            let log = std::fs::File::create(logs.join(format!("{name}.log")))?;
            let mut command = Command::new(&exe);
            command
                .args(["serve", service])
                .envs(common.iter().map(|(k, v)| (*k, v.as_str())))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log);
            if let Some(addr) = metrics_addr {
                command.env("GUICHET_METRICS_ADDR", addr.to_string());
            }
            if let Some((variable, addr)) = own_addr {
                command.env(variable, addr.to_string());
            }
            let child = command
                .spawn()
                .with_context(|| format!("starting `guichet serve {service}`"))?;
            services.push(Service { name, child });
        }
        let mut mesh = Mesh {
            gateway_url: format!("http://{http}"),
            intake_web_url: format!("http://{intake_web}"),
            services,
            logs,
            issuer,
            in_process_stop,
            mail,
            database_url: database_url.to_string(),
            data_dir: work.join("data"),
        };
        // A mesh that never got ready is stopped, not left running.
        if let Err(e) = mesh.wait_ready(Duration::from_secs(60)).await {
            mesh.stop();
            return Err(e);
        }
        Ok(mesh)
    }

    /// `Authorization` for the agent `uid`, given `role` in the gateway's
    /// store first.
    pub async fn agent(
        &self,
        uid: &str,
        role: guichet_access::Role,
        prefecture: Option<&str>,
    ) -> anyhow::Result<String> {
        use guichet_gateway::directory::{ChangedBy, Directory};
        let directory = Directory::open(
            Some(&self.database_url),
            &self.data_dir,
            guichet_kit::db::Pool::sized(4),
        )
        .await
        .context("opening the gateway's store")?;
        let by = ChangedBy {
            actor: "bench".into(),
            agent: None,
            client: "bench".into(),
        };
        directory
            .grant(uid, role, prefecture, &by, chrono::Utc::now())
            .await
            .context("granting the bench's agent its role")?;
        directory.db().close().await;
        Ok(format!("Bearer {}", self.issuer.agent_token(uid)))
    }

    async fn wait_ready(&mut self, within: Duration) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + within;
        let url = format!("{}/readyz", self.gateway_url);
        loop {
            if let Ok(r) = http.get(&url).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            for s in &mut self.services {
                if let Ok(Some(status)) = s.child.try_wait() {
                    anyhow::bail!(
                        "`guichet serve {}` stopped during start-up ({status}); see {}",
                        s.name,
                        self.logs.join(format!("{}.log", s.name)).display()
                    );
                }
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the mesh was not ready within {within:?}; see the logs in {}",
                self.logs.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Asks every service to stop (SIGTERM, so they drain), then makes sure.
    pub fn stop(mut self) {
        self.in_process_stop.cancel();
        for s in self.services.iter().rev() {
            let _ = Command::new("kill")
                .args(["-TERM", &s.pid().to_string()])
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        for s in &mut self.services {
            loop {
                match s.child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() > deadline => {
                        let _ = s.child.kill();
                        let _ = s.child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
    }
}
