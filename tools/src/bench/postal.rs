//! `guichet bench-postal`: pages per minute per scanning station, on the
//! real mesh (one process per service, RabbitMQ and PostgreSQL). Each
//! station uploads a stack of envelopes through the gateway, as mailroom
//! software does: a separator sheet, a pre-filled form printed by the mesh,
//! and enclosures without a code (OCR'd), every page scanned at 200 dpi
//! slightly crooked and noisy. A station's time runs from the start of its
//! upload to the moment its batch is read (envelopes waiting for keying).

use std::time::{Duration, Instant};

use anyhow::Context;
use guichet_intake_postal::corpus::{Distortion, distort};
use guichet_intake_postal::{render, scan};
use serde::Serialize;

use super::scratch::{Scratch, Servers};
use super::{mesh, procfs};

#[derive(Debug, Clone, clap::Args)]
pub struct PostalBenchArgs {
    /// Envelopes in each station's stack.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=2_000))]
    pub envelopes: u32,
    /// Enclosure pages (no code, read by OCR) after each envelope's form.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=20))]
    pub enclosures: u32,
    /// Stations uploading at the same time.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub stations: u32,
    /// A short run that only checks everything works (for CI): one station,
    /// three envelopes.
    #[arg(long)]
    pub smoke: bool,
    #[arg(long)]
    pub json: bool,
    #[arg(long, default_value = "info")]
    pub service_log: String,
    #[command(flatten)]
    pub servers: Servers,
}

#[derive(Debug, Serialize)]
pub struct StationFigures {
    pub pages: usize,
    pub envelopes: usize,
    pub upload_seconds: f64,
    pub read_seconds: f64,
    pub pages_per_minute: f64,
    pub codes_read: usize,
    pub pages_without_code: usize,
}

#[derive(Debug, Serialize)]
pub struct PostalReport {
    pub stations: Vec<StationFigures>,
    /// Mean over stations.
    pub pages_per_minute_per_station: f64,
    /// Every station's pages over the whole run.
    pub pages_per_minute_total: f64,
    pub postal_service_cpu_seconds: f64,
    pub readers: usize,
    pub build: &'static str,
    pub cores: usize,
    pub load_average_before: Option<f64>,
    pub load_average_after: Option<f64>,
}

impl PostalReport {
    pub fn table(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "postal stations ({} build, {} cores, load {:.1} -> {:.1}, {} pages read at once)\n",
            self.build,
            self.cores,
            self.load_average_before.unwrap_or(0.0),
            self.load_average_after.unwrap_or(0.0),
            self.readers
        ));
        out.push_str("station  pages  envelopes  upload s  read s  pages/min  codes  no code\n");
        for (i, s) in self.stations.iter().enumerate() {
            out.push_str(&format!(
                "{:>7}  {:>5}  {:>9}  {:>8.1}  {:>6.1}  {:>9.1}  {:>5}  {:>7}\n",
                i + 1,
                s.pages,
                s.envelopes,
                s.upload_seconds,
                s.read_seconds,
                s.pages_per_minute,
                s.codes_read,
                s.pages_without_code
            ));
        }
        out.push_str(&format!(
            "pages per minute per station: {:.1}; all stations together: {:.1}; postal service CPU: {:.1} s\n",
            self.pages_per_minute_per_station, self.pages_per_minute_total, self.postal_service_cpu_seconds
        ));
        out
    }
}

pub async fn run(args: &PostalBenchArgs) -> anyhow::Result<PostalReport> {
    let name = format!("guichet_bench_postal_{}", std::process::id());
    let work = std::env::temp_dir().join(&name);
    std::fs::create_dir_all(&work)?;
    let scratch = Scratch::create(&args.servers, &name).await?;
    let outcome = run_in(args, &scratch, &work).await;
    scratch.drop_all().await;
    super::tidy_work(&outcome, &work);
    outcome
}

async fn run_in(
    args: &PostalBenchArgs,
    scratch: &Scratch,
    work: &std::path::Path,
) -> anyhow::Result<PostalReport> {
    let (envelopes, stations) = if args.smoke {
        (3, 1)
    } else {
        (args.envelopes as usize, args.stations as usize)
    };
    let progress = |what: &str| {
        if !args.json {
            eprintln!("bench-postal: {what}");
        }
    };

    let mailroom = guichet_intake_postal::settings::MailroomSettings::from_env()
        .context("reading the mailroom's GUICHET_* settings")?;
    progress("starting the mesh");
    let mesh = mesh::Mesh::start(
        &scratch.database_url,
        &scratch.amqp_url,
        work,
        &args.service_log,
        None,
        1,
        std::time::Duration::ZERO,
    )
    .await?;
    let outcome = async {
        // The mailroom's routes are its operators': the bench signs in as one.
        let auth = mesh
            .agent(
                "bench-mailroom",
                guichet_access::Role::MailroomOperator,
                None,
            )
            .await?;
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            reqwest::header::HeaderValue::from_str(&auth)?,
        );
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .build()?;
        progress("printing and scanning the stacks");
        let mut stacks = Vec::new();
        for s in 0..stations {
            stacks.push(
                stack(
                    &http,
                    &mesh.gateway_url,
                    s,
                    envelopes,
                    args.enclosures as usize,
                )
                .await?,
            );
        }
        let postal_pid = mesh
            .services
            .iter()
            .find(|s| s.name == "intake-postal")
            .map(|s| s.pid());
        let cpu_before = postal_pid.and_then(procfs::cpu_time);
        let load_before = procfs::load_average();
        progress("uploading and reading");
        let started = Instant::now();
        let runs = futures_util::future::join_all(
            stacks
                .into_iter()
                .enumerate()
                .map(|(i, pages)| station(&http, &mesh.gateway_url, i, pages)),
        )
        .await;
        let total_seconds = started.elapsed().as_secs_f64();
        let stations: Vec<StationFigures> = runs.into_iter().collect::<anyhow::Result<_>>()?;
        let cpu = match (cpu_before, postal_pid.and_then(procfs::cpu_time)) {
            (Some(a), Some(b)) => (b - a).as_secs_f64(),
            _ => 0.0,
        };
        let total_pages: usize = stations.iter().map(|s| s.pages).sum();
        Ok(PostalReport {
            pages_per_minute_per_station: stations.iter().map(|s| s.pages_per_minute).sum::<f64>()
                / stations.len() as f64,
            pages_per_minute_total: total_pages as f64 / total_seconds * 60.0,
            stations,
            postal_service_cpu_seconds: cpu,
            readers: mailroom.postal_readers,
            build: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
            cores: procfs::cores(),
            load_average_before: load_before,
            load_average_after: procfs::load_average(),
        })
    }
    .await;
    mesh.stop();
    outcome
}

/// One station's stack: per envelope a separator, the form, the enclosures.
async fn stack(
    http: &reqwest::Client,
    gateway: &str,
    station: usize,
    envelopes: usize,
    enclosures: usize,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let separator = http
        .get(format!("{gateway}/api/v1/postal/separators?count=1"))
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    let separator = scanned(&separator, 1).await?;
    let enclosure = render::letter_pdf(&render::LetterText {
        addressee: vec!["Préfecture".into()],
        place_and_date: "Lille, le 2 novembre 2026".into(),
        subject: "justificatif de domicile".into(),
        paragraphs: vec!["Facture d'électricité au nom de la personne, pour le logement qu'elle occupe à Lille depuis 2021.".into()],
        reference: "-".into(),
    });
    let enclosure = scanned(&enclosure, 2).await?;
    let mut pages = Vec::new();
    for e in 0..envelopes {
        let form = http
            .post(format!("{gateway}/api/v1/postal/forms"))
            .json(&serde_json::json!({
                "procedure": "renewal",
                "prefill": {
                    "family_name": format!("Station{station}-{e}"),
                    "birth_date": "1990-05-14",
                    "nationality": "SEN",
                },
            }))
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        pages.push(separator.clone());
        pages.push(scanned(&form, (station * 1000 + e) as u64).await?);
        pages.extend(std::iter::repeat_n(enclosure.clone(), enclosures));
    }
    Ok(pages)
}

async fn scanned(pdf: &[u8], seed: u64) -> anyhow::Result<Vec<u8>> {
    let png = scan::pdf_pages(pdf, 200)
        .await
        .context("rasterising with pdftoppm (poppler-utils)")?
        .remove(0);
    let page = image::load_from_memory(&png)?.into_luma8();
    let d = Distortion {
        rotation: (seed % 5) as f64 * 0.5 - 1.0,
        skew: (seed % 3) as f64 * 0.5 - 0.5,
        noise: 6.0,
        specks: 0.0005,
        seed,
    };
    scan::encode_png(&distort(&page, d)).map_err(anyhow::Error::msg)
}

async fn station(
    http: &reqwest::Client,
    gateway: &str,
    index: usize,
    pages: Vec<Vec<u8>>,
) -> anyhow::Result<StationFigures> {
    let count = pages.len();
    let started = Instant::now();
    let mut form = reqwest::multipart::Form::new()
        .text("station_id", format!("bench-station-{index}"))
        .text(
            "reception_date",
            chrono::Utc::now().date_naive().to_string(),
        );
    for (i, png) in pages.into_iter().enumerate() {
        form = form.part(
            "page",
            reqwest::multipart::Part::bytes(png)
                .file_name(format!("page-{i:04}.png"))
                .mime_str("image/png")?,
        );
    }
    let uploaded: serde_json::Value = http
        .post(format!("{gateway}/api/v1/postal/batches"))
        .multipart(form)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let upload_seconds = started.elapsed().as_secs_f64();
    let batch_id = uploaded["batch_id"]
        .as_str()
        .context("no batch id in the upload's answer")?
        .to_string();
    let batch = loop {
        let b: serde_json::Value = http
            .get(format!("{gateway}/api/v1/postal/batches/{batch_id}"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        if b["state"] == "read" {
            break b;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(3600),
            "station {index}'s batch was not read within an hour"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let read_seconds = started.elapsed().as_secs_f64();
    let pages = batch["pages"].as_array().map_or(&[][..], |v| v.as_slice());
    let codes_read = pages
        .iter()
        .filter(|p| p["code"] == "form" || p["code"] == "separator")
        .count();
    Ok(StationFigures {
        pages: count,
        envelopes: batch["envelopes"].as_array().map_or(0, Vec::len),
        upload_seconds,
        read_seconds,
        pages_per_minute: count as f64 / read_seconds * 60.0,
        codes_read,
        pages_without_code: pages.iter().filter(|p| p["code"] == "none").count(),
    })
}
