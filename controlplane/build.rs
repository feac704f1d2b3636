//! Compiles the gRPC API (proto/fiberlb/v1/*.proto) with protox, a pure-Rust protobuf compiler,
//! so building needs no `protoc`. The file descriptor set is also embedded for gRPC reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/fiberlb/v1/fiberlb.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out.join("fiberlb_descriptor.bin");
    std::fs::write(&descriptor_path, prost::Message::encode_to_vec(&fds))?;
    tonic_prost_build::configure()
        // fiberlbctl's `-o json` prints the messages as they are.
        .type_attribute(".fiberlb.v1", "#[derive(serde::Serialize)]")
        .file_descriptor_set_path(&descriptor_path)
        .skip_protoc_run()
        .compile_fds(fds)?;
    Ok(())
}
