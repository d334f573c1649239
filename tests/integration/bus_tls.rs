//! TLS to the broker: `amqps://` through a TLS endpoint whose certificate a
//! private authority signs (made by the test with `openssl`), trusted with
//! `GUICHET_AMQP_CA_FILE`; refused without it; and plain `amqp://` to
//! another host refused at start-up.

use crate::common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{TestEnv, eventually};
use guichet_kit::bus::{AmqpBus, Bus, DOSSIERS_EXCHANGE, INSTRUCTION_QUEUE, OutgoingMessage};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A private authority and a certificate it signs for `localhost`, in `dir`:
/// `ca.pem`, `server.pem`, `server.key`.
fn make_certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=Guichet test authority",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
}

/// A TLS endpoint in front of the broker's plain port, as a broker's own
/// TLS listener or a terminating proxy would be: its port.
async fn tls_endpoint(dir: &Path) -> u16 {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(client).await else {
                    return;
                };
                let Ok(mut broker) = tokio::net::TcpStream::connect("127.0.0.1:5672").await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut broker).await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_speaks_tls_to_a_broker_signed_by_a_private_authority() {
    let env = TestEnv::new().await;
    let dir = env.data_dir.join("tls");
    std::fs::create_dir_all(&dir).unwrap();
    make_certificates(&dir);
    let port = tls_endpoint(&dir).await;
    let url = format!("amqps://guest:guest@localhost:{port}/{}", env.name);
    let ca = std::fs::read_to_string(dir.join("ca.pem")).unwrap();

    // Trusted through the authority: the topology is declared, a message
    // goes through and comes back.
    let bus = AmqpBus::new(&url, "tls-test", 3).with_ca(ca);
    bus.ensure_ready().await.expect("connected over TLS");
    let message = OutgoingMessage::traced(
        DOSSIERS_EXCHANGE,
        "dossier.submitted.web".into(),
        b"over tls".to_vec(),
    );
    for r in bus.publish(std::slice::from_ref(&message)).await {
        r.expect("published over TLS, confirmed");
    }
    let taken = eventually(Duration::from_secs(20), "the message back", || async {
        let d = bus.take(INSTRUCTION_QUEUE, 1).await.ok()?;
        d.into_iter().next()
    })
    .await;
    assert_eq!(taken.body, b"over tls");
    taken.ack().await.unwrap();
    bus.close().await;

    // Without the authority, the certificate is not trusted: no connection.
    let untrusting = AmqpBus::new(&url, "tls-test-untrusting", 3);
    let refused = untrusting
        .ensure_ready()
        .await
        .expect_err("an unknown authority");
    assert!(
        guichet_kit::error::error_chain(&refused)
            .to_lowercase()
            .contains("certificate"),
        "{}",
        guichet_kit::error::error_chain(&refused)
    );

    // And a service told plain amqp:// to another host does not start.
    let mut config = env.config();
    config.amqp_url = Some("amqp://guest:guest@rabbitmq.example.org:5672/%2f".into());
    let Err(e) = guichet_kit::service::open_bus(&config, "instruction").await else {
        panic!("plain AMQP to another host must be refused");
    };
    assert!(e.to_string().contains("GUICHET_AMQP_URL"), "{e}");
    config.amqp_allow_plaintext = true;
    assert!(
        guichet_kit::service::open_bus(&config, "instruction")
            .await
            .is_ok()
    );
    env.cleanup().await;
}
