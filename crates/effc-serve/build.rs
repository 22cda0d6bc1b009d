//! Compiles `proto/inference.proto` with protox (a protobuf compiler in Rust:
//! no `protoc` needed) into tonic's server code.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/inference.proto");
    let fds = protox::compile(["inference.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(false)
        .compile_fds(fds)?;
    Ok(())
}
