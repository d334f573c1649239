//! Compiles proto/guichet/v1 with protox (pure Rust), so no protoc is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "guichet/v1/dossier.proto",
        "guichet/v1/intake_web.proto",
        "guichet/v1/instruction.proto",
        "guichet/v1/call_centre.proto",
        "guichet/v1/desk.proto",
        "guichet/v1/postal.proto",
        "guichet/v1/notifier.proto",
    ];
    let descriptors = protox::compile(files, ["."])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("guichet_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    Ok(())
}
