//! Embedding example: create a raw image, write a pattern through the host,
//! read it back, and print what the host knows about the image.
//!
//! `cargo run -p plugin-host --example embed -- /tmp/embed.img [PLUGIN_DIR]`

use plugin_host::{Host, OpenOptions, ZeroFlags};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .unwrap_or_else(|| "/tmp/blk-embed.img".to_string());
    // Reads no environment: the program alone chooses the code it runs.
    let mut builder = Host::builder().env_plugin_path(false);
    if let Some(dir) = args.next() {
        // Use only the plugin libraries, to show the plugin path end to end.
        builder = builder.static_drivers(false).plugin_dir(dir);
    }
    let host = builder.build()?;

    host.create("raw", &path, "", Some(1 << 20), None)?;
    let img = host.open(
        &path,
        &OpenOptions {
            format: Some("raw".into()),
            ..Default::default()
        },
    )?;
    img.write(4096, &[0xab; 4096])?;
    img.write_zeroes(8192, 4096, ZeroFlags::NONE)?;
    img.flush()?;

    let mut buf = vec![0u8; 4096];
    img.read(4096, &mut buf)?;
    assert!(buf.iter().all(|&b| b == 0xab), "read back what was written");
    let info = img.info()?;
    println!("{}", serde_json::to_string_pretty(&info)?);
    Ok(())
}
