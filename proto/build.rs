//! Compiles the .proto contracts with protox, so no `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/dynamic_mcp/v1/tools.proto",
        "proto/dynamic_mcp/v1/registry.proto",
        "proto/dynamic_mcp/v1/executor.proto",
    ];
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
