//! PID 1 of the guest image (placeholder until the real one lands).
fn main() {
    println!("{}", lab_proto::Marker::Init { uptime_ms: 0 });
}
