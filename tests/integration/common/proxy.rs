//! A TCP proxy the test can cut and restore, to make a real server
//! unreachable for one service without touching the server itself.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};

use super::TestEnv;
use tokio::sync::Mutex;
use tokio::task::AbortHandle;

pub struct Proxy {
    pub addr: SocketAddr,
    open: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let open = Arc::new(AtomicBool::new(true));
        let links: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (o, l) = (open.clone(), links.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if !o.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let link = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                l.lock().await.push(link.abort_handle());
            }
        })
        .abort_handle();
        Self {
            addr,
            open,
            links,
            accept,
        }
    }

    /// A proxy to the test broker (`GUICHET_TEST_AMQP_URL`).
    pub async fn to_broker() -> Self {
        Self::start(server_addr(&super::amqp_base_url(), 5672)).await
    }

    /// A proxy to the test PostgreSQL (`GUICHET_TEST_DATABASE_URL`).
    pub async fn to_database() -> Self {
        Self::start(server_addr(&super::database_admin_url(), 5432)).await
    }

    /// `env`'s vhost on the broker, through this proxy.
    pub fn amqp_url(&self, env: &TestEnv) -> String {
        let mut url = self.through(&super::amqp_base_url());
        url.set_path(&format!("/{}", env.name));
        url.to_string()
    }

    /// `env`'s database, through this proxy.
    pub fn database_url(&self, env: &TestEnv) -> String {
        self.through(env.database_url.as_deref().expect("a servers test"))
            .to_string()
    }

    fn through(&self, url: &str) -> reqwest::Url {
        let mut url = reqwest::Url::parse(url).expect("a server URL");
        url.set_ip_host(self.addr.ip()).expect("an IP host");
        url.set_port(Some(self.addr.port())).expect("a port");
        url
    }

    /// Refuses new connections and drops every open one.
    pub async fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for link in self.links.lock().await.drain(..) {
            link.abort();
        }
    }

    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

/// Where the server of `url` listens (`default_port` if it names none).
fn server_addr(url: &str, default_port: u16) -> SocketAddr {
    let url = reqwest::Url::parse(url).expect("a server URL");
    let host = url.host_str().unwrap_or("127.0.0.1");
    let port = url.port().unwrap_or(default_port);
    std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .expect("a resolvable server host")
        .next()
        .expect("an address for the server host")
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}
