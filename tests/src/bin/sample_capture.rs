//! Writes the sample capture used by the demo and the replay test.
//! Usage: sample_capture OUT.pcap
fn main() -> std::process::ExitCode {
    let Some(out) = std::env::args_os().nth(1) else {
        eprintln!("usage: sample_capture OUT.pcap");
        return std::process::ExitCode::FAILURE;
    };
    match fiberlb_tests::sample::write_sample_capture(std::path::Path::new(&out)) {
        Ok(c) => {
            println!("wrote {}: {c:?}", std::path::Path::new(&out).display());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "sample_capture: {}: {e}",
                std::path::Path::new(&out).display()
            );
            std::process::ExitCode::FAILURE
        }
    }
}
