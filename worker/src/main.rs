fn main() {
    eprintln!("mapfleet-worker: the fleet consumer is not built yet");
    std::process::exit(2);
}
